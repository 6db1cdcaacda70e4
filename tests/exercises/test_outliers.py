"""Lesson 6 exercises: correct answers pass, plausible wrong ones fail with a useful message."""

from __future__ import annotations

import numpy as np

import qlab.exercises as ex


def test_correct_answers_pass() -> None:
    def cols(x, threshold=6.0):
        return np.flatnonzero((np.abs(x.reshape(-1, x.shape[-1])) >= threshold).any(0))

    def smooth(a, w, alpha):
        return a**alpha / np.abs(w).max(0) ** (1 - alpha)

    assert ex.check("outlier_columns", cols)
    assert ex.check("smoothing_factors", smooth)


def test_wrong_answers_fail() -> None:
    def cols_rows(x, threshold=6.0):  # reduces over channels: outlier *tokens*
        return np.flatnonzero((np.abs(x.reshape(-1, x.shape[-1])) >= threshold).any(1))

    def cols_strict(x, threshold=6.0):  # forgets the absolute value
        return np.flatnonzero((x.reshape(-1, x.shape[-1]) >= threshold).any(0))

    for fn in (cols_rows, cols_strict):
        r = ex.check("outlier_columns", fn)
        assert not r and "expected [" in r.message and "any(axis=0)" in r.hint

    def smooth_rows(a, w, alpha):  # weight maximum per output row: wrong axis (shape error)
        return a**alpha / np.abs(w).max(1) ** (1 - alpha)

    def smooth_swapped(a, w, alpha):  # exponents swapped
        return a ** (1 - alpha) / np.abs(w).max(0) ** alpha

    r = ex.check("smoothing_factors", smooth_rows)
    assert not r and ("shape" in r.message or "raised" in r.message)
    r = ex.check("smoothing_factors", smooth_swapped)
    assert not r and "values differ" in r.message
    assert "outlier_columns" in ex.names(6) and "smoothing_factors" in ex.names(6)
