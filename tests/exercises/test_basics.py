"""Plausible wrong answers to the lesson 01-03 exercises fail, with a message that points at the mistake."""

import numpy as np

import qlab.exercises as ex


def test_count_parameters_tied_weight_counted_twice():
    r = ex.check("count_parameters", lambda m: sum(v.numel() for v in m.state_dict().values()))
    assert not r and "tied" in r.message and "case 2" in r.message
    assert ex.check("count_parameters", lambda m: sum(p.numel() for p in m.parameters()))
    r = ex.check("count_parameters", lambda m: "many")
    assert not r and "integer" in r.message


def _sym(x, qmax=127, div=127):
    s = np.abs(x).max() / div
    return np.clip(np.round(x / s), -qmax - 1, qmax).astype(np.int8), s


def test_symmetric_int8_wrong_answers():
    assert ex.check("symmetric_int8", _sym)
    r = ex.check("symmetric_int8", lambda x: _sym(x)[0])  # forgot to return the scale
    assert not r and "expected a tuple" in r.message
    truncated = ex.check("symmetric_int8", lambda x: ((x / (np.abs(x).max() / 127)).astype(np.int8), np.abs(x).max() / 127))
    assert not truncated and "codes differ" in truncated.message and "Round" in truncated.hint
    r = ex.check("symmetric_int8", lambda x: _sym(x, qmax=127, div=128))
    assert not r and "scale" in r.message and "ratio 0.99" in r.message
    r = ex.check("symmetric_int8", lambda x: (np.round(x / (np.abs(x).max() / 127)), np.abs(x).max() / 127 * 1.0))
    assert r  # float codes that are whole numbers are accepted
    r = ex.check("symmetric_int8", lambda x: (np.round(x / (np.abs(x).max() / 200)), np.abs(x).max() / 127))
    assert not r and "outside -127..127" in r.message


def test_per_channel_scales_wrong_axis_and_divisor():
    assert ex.check("per_channel_scales", lambda w, bits=8: np.abs(w).max(axis=1, keepdims=True) / (2 ** (bits - 1) - 1))
    r = ex.check("per_channel_scales", lambda w, bits=8: np.abs(w).max(axis=0) / (2 ** (bits - 1) - 1))
    assert not r and "one scale per row" in r.message
    r = ex.check("per_channel_scales", lambda w, bits=8: np.abs(w).max(axis=1) / 127)
    assert not r and "bits=4" in r.message and "ratio" in r.message
