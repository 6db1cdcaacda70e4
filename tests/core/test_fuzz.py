"""Property test of qlab.core (issue 11, "the rule from now on"): the metrics and the table
renderer on random shapes, dtypes and magnitudes give a correct result or ValueError/TypeError --
never NaN from finite input, never another exception type."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlab.core import error_stats, format_table, pareto_front, sqnr_db, sqnr_from_power
from qlab.core.metrics import weight_error

SHAPES = st.sampled_from([(0,), (1,), (7,), (3, 5), (2, 3, 4)])
DTYPES = st.sampled_from(["float32", "float64", "float16", "int32", "int8", "complex64", "bool", "object", "U3"])


@st.composite
def arrays(draw, shape=None):
    shape = shape or draw(SHAPES)
    exp = draw(st.integers(-300, 300))
    x = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal(shape) * 10.0**exp
    dtype = draw(DTYPES)
    with np.errstate(all="ignore"):
        if dtype == "object":
            return x.astype(object)
        if dtype == "U3":
            return x.astype("U3")
        y = x.astype(dtype)
    if np.issubdtype(y.dtype, np.floating):
        y[~np.isfinite(y)] = np.finfo(y.dtype).max  # finite input, up to the dtype's maximum
    return y


def _finite(x: np.ndarray) -> bool:
    try:
        return bool(np.all(np.isfinite(np.asarray(x, np.float64))))
    except (TypeError, ValueError):
        return False


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_metrics_result_or_clear_error(data):
    x = data.draw(arrays())
    y = data.draw(st.one_of(arrays(), arrays(shape=x.shape)))
    for fn in (sqnr_db, error_stats):
        try:
            with np.errstate(all="ignore"):
                out = fn(x, y)
        except (ValueError, TypeError):
            continue
        assert x.shape == y.shape, f"{fn.__name__} accepted shapes {x.shape} and {y.shape} (broadcast)"
        vals = [out] if fn is sqnr_db else list(out.values())
        if _finite(x) and _finite(y):
            assert not any(math.isnan(v) for v in vals), f"{fn.__name__}: NaN from finite input {x.dtype} {y.dtype}"
    if x.dtype == np.float32 and y.dtype == np.float32 and x.shape == y.shape:
        s, mse, mx = weight_error(x, y)
        assert not math.isnan(s) and math.isfinite(mse) or x.size == 0


@settings(max_examples=100, deadline=None)
@given(signal=st.floats(allow_nan=True, allow_infinity=True), noise=st.floats(allow_nan=True, allow_infinity=True))
def test_sqnr_from_power(signal, noise):
    try:
        v = sqnr_from_power(signal, noise)
    except (ValueError, TypeError):
        assert math.isnan(signal) or math.isnan(noise) or min(signal, noise) < 0 or math.isinf(signal) == math.isinf(noise) == True  # noqa: E712
        return
    assert signal >= 0 and noise >= 0 and not (math.isinf(signal) and math.isinf(noise))
    assert not math.isnan(v)
    if noise > 0 and signal > 0:
        assert v == pytest.approx(10 * (math.log10(signal) - math.log10(noise)))  # no overflow of the ratio


CELLS = st.one_of(st.none(), st.integers(-10**20, 10**20), st.floats(allow_nan=True), st.text(st.characters(blacklist_categories=("Cc", "Zl", "Zp")), max_size=5),
                  st.booleans(), st.lists(st.integers(), max_size=2))  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from("abc"), CELLS, max_size=3), max_size=4),
       fmt=st.sampled_from([None, ".3f", "d", ".2e", "bogus"]))  # fmt: skip
def test_format_table(rows, fmt):
    cols = [("a", "A", fmt), ("b", "B", None), ("c", "C", ".1f")]
    try:
        text = format_table(rows, cols)
    except (ValueError, TypeError):
        return
    assert len(text.split("\n")) == 2 + len(rows)


@settings(max_examples=100, deadline=None)
@given(x=st.lists(st.floats(allow_nan=True), max_size=6), y=st.lists(st.floats(allow_nan=True), max_size=6),
       maximize=st.booleans())  # fmt: skip
def test_pareto_front(x, y, maximize):
    try:
        front = pareto_front(x, y, maximize_y=maximize)
    except (ValueError, TypeError):
        assert len(x) != len(y)
        return
    assert front.shape == (len(x),) and front.dtype == bool
    assert not front[np.isnan(np.asarray(x, float)) | np.isnan(np.asarray(y, float))].any()
