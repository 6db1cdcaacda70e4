"""Lesson 09 exercise: the LSQ step gradient; a numpy answer passes, plausible mistakes fail."""

import numpy as np

import qlab.exercises as ex


def _grad(v, s, bits):
    q = 2 ** (bits - 1) - 1
    r = v / s
    return np.where(r < -q, -q, np.where(r > q, q, np.round(r) - r))


def test_numpy_answer_passes():
    assert ex.check("lsq_step_grad", _grad)


def test_forgetting_the_clipped_case_fails():
    r = ex.check("lsq_step_grad", lambda v, s, bits: np.round(v / s) - v / s)
    assert not r and "values differ" in r.message and "-Q" in r.hint


def test_zero_gradient_inside_fails():
    # treating round's derivative as 0 (the "true" gradient) leaves only round(v/s) inside the range
    def no_ste(v, s, bits):
        q = 2 ** (bits - 1) - 1
        r = v / s
        return np.where(r < -q, -q, np.where(r > q, q, np.round(r)))

    assert not ex.check("lsq_step_grad", no_ste)
