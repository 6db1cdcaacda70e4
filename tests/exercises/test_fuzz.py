"""Property test of the exercise checker (issue 11, "the rule from now on"): whatever a learner's
function returns -- complex values, objects, strings, wrong shapes, NaN, None, nested lists,
tensors -- ``qlab.exercises.check`` reports ✓ or ✗ with the hint; it never raises."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlab.exercises as ex

NAMES = ex.names()


@functools.cache
def _first(name: str) -> tuple[Any, Any]:
    """The first case's arguments and the reference answer (computed once per exercise)."""
    e = ex.get(name)
    args, kwargs = next(iter(e.cases()))
    return (args, kwargs), e.reference(*args, **kwargs)


def _mutate(ref: Any, how: str) -> tuple[Any, bool]:
    """``(answer, may_pass)``: ``may_pass`` when the mutation keeps the values (a list or tensor)."""
    if isinstance(ref, tuple):
        if how == "tuple_short":
            return ref[:-1], False
        return tuple(_mutate(r, how)[0] for r in ref), how in ("list", "tensor", "same")
    a = np.asarray(ref)
    with np.errstate(all="ignore"):
        return {
            "same": (ref, True),
            "list": (a.tolist(), True),
            "tensor": (torch.as_tensor(a.copy()) if a.dtype.kind in "fiub" else ref, True),
            "complex": (a + 1j, False),
            "complex0": (a.astype(np.complex128), True),  # imaginary part 0: a float compare would pass it
            "object": (a.astype(object), True),
            "str": (a.astype(str), False),
            "bytes": (a.astype("S8"), False),
            "shape": (np.append(a.ravel(), 0.0), False),
            "transpose": (a.reshape(1, -1) if a.ndim < 2 else a.T.copy(), a.ndim >= 2 and a.shape == a.T.shape),
            "nan": (np.full_like(a, np.nan, dtype=np.float64), False),
            "none": (None, False),
            "dict": ({"x": ref}, False),
            "nested": ([[1, 2], [3]], False),
            "tuple_short": ((ref,), True),
            "float16": (a.astype(np.float16) if a.dtype.kind in "fiu" else a, True),
        }[how]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), how=st.sampled_from(
    ["same", "list", "tensor", "complex", "complex0", "object", "str", "bytes", "shape", "transpose", "nan",
     "none", "dict", "nested", "tuple_short", "float16"]))  # fmt: skip
def test_check_reports_never_raises(name, how):
    _, ref = _first(name)
    answer, may_pass = _mutate(ref, how)

    calls = []

    def learner(*args: Any, **kwargs: Any) -> Any:  # the mutated answer on the first case
        calls.append(1)
        return answer if len(calls) == 1 else ex.get(name).reference(*args, **kwargs)

    res = ex.check(name, learner)  # never raises
    assert isinstance(res.passed, bool)
    if not res.passed:
        assert "Hint:" in str(res) and res.cases_run >= 1
    if how in ("complex", "str", "bytes", "nan", "none", "dict", "nested") and not (how == "nan" and _all_nan(ref)):
        assert not res.passed, f"{name}: a {how} answer passed"
    if how == "same":
        assert res.passed
    if how == "complex0" and res.passed is False:
        assert "complex" in str(res)


def _all_nan(ref: Any) -> bool:
    try:
        return bool(np.all(np.isnan(np.asarray(ref, np.float64))))
    except (TypeError, ValueError):
        return False
