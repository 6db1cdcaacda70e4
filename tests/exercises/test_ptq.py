"""Lesson 07 exercise: the reference matches an independent numpy min-max rule; wrong answers fail."""

import numpy as np

import qlab.exercises as ex
from qlab.exercises.ptq import minmax_qparams


def _numpy(x, bits):
    lo, hi = np.float32(min(x.min(), 0)), np.float32(max(x.max(), 0))
    s = np.float32((hi - lo) / np.float32(2**bits - 1))
    return s, np.int32(np.clip(np.rint(-lo / s), 0, 2**bits - 1))


def test_reference_is_the_textbook_rule():
    rng = np.random.default_rng(1)
    for x, bits in [(rng.normal(size=500).astype(np.float32), 8), (rng.uniform(2, 3, 50).astype(np.float32), 4)]:
        s, z = minmax_qparams(x, bits)
        es, ez = _numpy(x, bits)
        assert np.isclose(s, es, rtol=1e-6) and z == ez


def test_correct_answer_passes():
    assert ex.check("minmax_qparams", _numpy)


def test_range_without_zero_fails():
    def no_zero(x, bits):
        lo, hi = np.float32(x.min()), np.float32(x.max())
        s = (hi - lo) / np.float32(2**bits - 1)
        return np.float32(s), np.int32(np.clip(np.rint(-lo / s), 0, 2**bits - 1))

    r = ex.check("minmax_qparams", no_zero)
    assert not r and "case 4" in r.message and "min(x.min(), 0)" in r.hint  # the all-positive case


def test_wrong_level_count_and_symmetric_fail():
    r = ex.check("minmax_qparams", lambda x, bits: (np.float32((x.max() - min(x.min(), 0)) / 2**bits), np.int32(0)))
    assert not r and "case 1" in r.message and "item 0" in r.message
    r = ex.check("minmax_qparams", lambda x, bits: (np.float32(np.abs(x).max() / (2 ** (bits - 1) - 1)), np.int32(0)))
    assert not r
