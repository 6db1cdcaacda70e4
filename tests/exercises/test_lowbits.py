"""Lesson 11 exercises: the reference passes, plausible wrong answers fail with a useful message."""

import numpy as np

import qlab.exercises as ex
from qlab.exercises.lowbits import prune_2_4, ternary_weight


def test_references_pass():
    assert ex.check("ternary_absmean", ternary_weight) and ex.check("prune_2_4", prune_2_4)
    assert ex.names(11) == ["prune_2_4", "ternary_absmean"]


def test_ternary_with_absmax_scale_fails():
    def absmax(w):
        g = np.abs(w).max()
        return np.clip(np.rint(w / g), -1, 1).astype(np.float32) * g

    r = ex.check("ternary_absmean", absmax)
    assert not r and "case 1" in r.message and "MEAN of |w|" in r.hint


def test_ternary_without_clip_fails_with_level_count():
    def unclipped(w):
        g = np.abs(w).mean()
        return np.rint(w / (g + 1e-5)).astype(np.float32) * np.float32(g)

    r = ex.check("ternary_absmean", unclipped)
    assert not r and "at most 3" in r.message


def test_prune_by_signed_value_fails():
    def signed(w):
        g = w.reshape(-1, 4)
        keep = np.zeros(g.shape, bool)
        np.put_along_axis(keep, np.argsort(-g, axis=1)[:, :2], True, axis=1)
        return np.where(keep, g, 0).reshape(w.shape)

    r = ex.check("prune_2_4", signed)
    assert not r and "differ" in r.message and "np.abs" in r.hint
