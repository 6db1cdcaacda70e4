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
