"""Lesson 17 exercises: the references pass and agree with independent values (scipy's Hadamard,
llama.cpp's KV sizes by hand); plausible wrong answers fail."""

import numpy as np
import pytest

import qlab.exercises as ex
from qlab.exercises.rotations import hadamard_matrix, kv_bytes_per_token


def test_references_pass_and_are_right():
    assert ex.check("hadamard_matrix", hadamard_matrix) and ex.check("kv_bytes_per_token", kv_bytes_per_token)
    assert ex.names(17) == ["hadamard_matrix", "kv_bytes_per_token"]
    scipy_linalg = pytest.importorskip("scipy.linalg")
    assert np.array_equal(hadamard_matrix(8), scipy_linalg.hadamard(8))
    assert kv_bytes_per_token(30, 3, 64, 1, 2) == 23040  # SmolLM2 f16: 30 layers * K,V * 192 values * 2 bytes
    assert kv_bytes_per_token(32, 8, 128, 1, 2) == 131072  # Llama-3-8B f16: 128 KiB per token


def test_kronecker_order_fails():
    def wrong(n):  # [[H, -H], [H, H]]: orthogonal too, but not Sylvester's matrix
        h = np.ones((1, 1))
        while h.shape[0] < n:
            h = np.block([[h, -h], [h, h]])
        return h

    r = ex.check("hadamard_matrix", wrong)
    assert not r and "case 2" in r.message


def test_kv_bytes_forgetting_v_fails():
    r = ex.check("kv_bytes_per_token", lambda layers, h, d, b, bb: layers * h * d / b * bb)
    assert not r and "K and V" in r.hint
