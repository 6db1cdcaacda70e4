"""The exercise checker: passes a correct answer, names the failing case of a wrong one."""

import numpy as np
import pytest

import qlab.exercises as ex
from qlab.exercises import Exercise, allclose


def _cases():
    rng = np.random.default_rng(0)
    yield (rng.normal(size=(4, 8)).astype(np.float32),), {}
    yield (np.zeros((2, 3), np.float32),), {"k": 2.0}


_EX = ex.exercise(Exercise("_test_double", lesson=0, prompt="return 2x (times k)", hint="multiply",
                           reference=lambda x, k=2.0: x * k, cases=_cases))


def test_correct_answer_passes():
    r = ex.check("_test_double", lambda x, k=2.0: x * k)
    assert r and r.cases_run == 2 and str(r).startswith("✓")


def test_wrong_answer_names_case_and_hint():
    r = ex.check("_test_double", lambda x, k=2.0: x * 3)
    assert not r and "case 1" in r.message and "differ" in r.message and "Hint: multiply" in str(r)


def test_exception_and_shape_are_reported():
    r = ex.check("_test_double", lambda x, k=2.0: 1 / 0)
    assert not r and "ZeroDivisionError" in r.message
    r = ex.check("_test_double", lambda x, k=2.0: (x * k).ravel())
    assert not r and "shape" in r.message


def test_tolerance_and_tuples():
    cmp = allclose(atol=1e-3)
    assert cmp((np.ones(3) + 1e-4, 2), (np.ones(3), 2)) is None
    assert "item 1" in cmp((np.ones(3), 3), (np.ones(3), 2))
    assert "tuple" in cmp(np.ones(3), (np.ones(3), 2))


def test_unknown_and_bad_input():
    with pytest.raises(ValueError, match="unknown exercise"):
        ex.get("no_such_exercise")
    with pytest.raises(TypeError):
        ex.check("_test_double", 3)


def test_every_registered_exercise_accepts_its_reference():
    # the reference answer must pass its own checker (guards the case generators of every lesson)
    for name in ex.names():
        e = ex.get(name)
        assert ex.check(name, e.reference), name
        assert e.prompt and e.hint and ex.show(name).startswith("Exercise")


# -- issue 11, item 12: complex and non-numeric answers ----------------------------------------------
def test_complex_answer_is_rejected():
    r = ex.check("_test_double", lambda x, k=2.0: x * k + 1000j)
    assert not r and "case 1" in r.message and "complex values (dtype complex" in r.message
    assert "Hint: multiply" in str(r)
    r = ex.check("_test_double", lambda x, k=2.0: (x * k).astype(np.complex64))  # even with a zero imaginary part
    assert not r and "complex values (dtype complex64)" in r.message


@pytest.mark.parametrize("answer, match", [
    (lambda x, k=2.0: np.vectorize(lambda v: repr(float(v)))(x * k), "the result is text, not numbers (dtype <U"),
    (lambda x, k=2.0: np.full(x.shape, "two x"), "cannot be compared with the reference (ValueError"),
])  # fmt: skip
def test_string_array_reported_not_raised(answer, match):
    r = ex.check("_test_double", answer)
    assert not r and "case 1" in r.message and match in r.message
    assert str(r).startswith("✗") and "Hint: multiply" in str(r)


def test_uncomparable_answer_reported_not_raised():
    r = ex.check("_test_double", lambda x, k=2.0: np.array([object()] * x.size, dtype=object).reshape(x.shape))
    assert not r and "cannot be compared with the reference (TypeError" in r.message and "Hint: multiply" in str(r)
