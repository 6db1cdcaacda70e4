"""Lesson 08 exercise: per-token quantization; a numpy answer passes, plausible mistakes fail."""

import numpy as np

import qlab.exercises as ex


def _per_token(x, bits, axis=-1):
    lo = np.minimum(x.min(axis=axis, keepdims=True), 0).astype(np.float32)
    hi = np.maximum(x.max(axis=axis, keepdims=True), 0).astype(np.float32)
    s = ((hi - lo) / np.float32(2**bits - 1)).astype(np.float32)
    z = np.clip(np.rint(-lo / s), 0, 2**bits - 1)
    q = np.clip(np.rint(x / s) + z, 0, 2**bits - 1)
    return ((q - z) * s).astype(np.float32)


def test_numpy_answer_passes():
    r = ex.check("quantize_per_token", _per_token)
    assert r, r.message


def test_per_tensor_answer_fails():
    r = ex.check("quantize_per_token", lambda x, bits: _per_token(x, bits, axis=None))
    assert not r and "values differ" in r.message and "last axis" in r.hint


def test_per_feature_answer_fails():
    r = ex.check("quantize_per_token", lambda x, bits: _per_token(x, bits, axis=0))
    assert not r and "case 1" in r.message


def test_returning_codes_fails():
    def codes(x, bits):
        lo = np.minimum(x.min(-1, keepdims=True), 0)
        s = (np.maximum(x.max(-1, keepdims=True), 0) - lo) / (2**bits - 1)
        return np.clip(np.rint(x / s) + np.rint(-lo / s), 0, 2**bits - 1)

    assert not ex.check("quantize_per_token", codes)
