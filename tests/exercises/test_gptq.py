"""Plausible wrong answers to the lesson 10 exercises fail; a correct numpy answer passes."""

import numpy as np

import qlab.exercises as ex


def _step(w, u, scale, zero, bits, divide=True, sign=-1.0):
    w = np.array(w, np.float32)
    q = (np.clip(np.rint(w[:, 0] * (np.float32(1) / scale)) + zero, 0, 2**bits - 1) - zero) * scale
    err = (w[:, 0] - q) / (u[0] if divide else 1)
    w[:, 1:] += sign * np.outer(err, u[1:])
    w[:, 0] = q
    return w


def test_gptq_step():
    assert ex.check("gptq_column_step", _step)
    assert not ex.check("gptq_column_step", lambda *a: _step(*a, divide=False))
    r = ex.check("gptq_column_step", lambda *a: _step(*a, sign=1.0))
    assert not r and "Hint" in str(r)


def _scales(x, alpha, normalise=True):
    s = np.maximum(np.asarray(x, np.float32) ** alpha, 1e-4)
    return s / np.sqrt(s.max() * s.min()) if normalise else s


def test_awq_scales():
    assert ex.check("awq_scales", _scales)
    assert not ex.check("awq_scales", lambda x, a: _scales(x, a, normalise=False))
    assert not ex.check("awq_scales", lambda x, a: (lambda s: s / np.sqrt(s.max() * s.min()))(np.asarray(x) ** a))


def test_awq_scales_lesson_suggestions_fail_with_hint():
    """Lesson 10 suggests these two changes to see the hint: normalising before clamping, no normalisation."""

    def normalise_first(x, a):
        s = np.asarray(x, np.float32) ** np.float32(a)
        return np.maximum(s / np.sqrt(s.max() * s.min()), 1e-4)

    for wrong in (normalise_first, lambda x, a: _scales(x, a, normalise=False)):
        r = ex.check("awq_scales", wrong)
        assert not r and "Hint" in str(r)
