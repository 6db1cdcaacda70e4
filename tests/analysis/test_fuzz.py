"""Property test of qlab.analysis's size and error functions (issue 11, "the rule from now on"):
random sizes, bit widths, bandwidths, shapes and options give a correct result or
ValueError/TypeError -- never NaN/Inf/ZeroDivisionError from valid-looking input."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import qlab.formats as F
from qlab.analysis.error import compare_formats, formats_with_bits
from qlab.analysis.size import decode_table, effective_bits, group_bits, size_table, stream_seconds

NUM = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**12), st.booleans(),
                st.just("4"), st.none())  # fmt: skip


def _ok_num(v, positive=True) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 if positive else v >= 0)


@settings(max_examples=120, deadline=None)
@given(e=NUM, s=NUM, g=NUM, z=NUM)
def test_group_bits(e, s, g, z):
    try:
        v = group_bits(e, s, g, z)
    except (ValueError, TypeError):
        return
    assert _ok_num(e, False) and _ok_num(s, False) and _ok_num(g) and _ok_num(z, False)
    assert math.isfinite(v) and v == e + (s + z) / g


@settings(max_examples=120, deadline=None)
@given(n=NUM, bits=NUM, other=NUM, bw=NUM)
def test_size_and_decode_tables(n, bits, other, bw):
    try:
        rows = size_table(n, {"x": bits}, other)
    except (ValueError, TypeError):
        pass
    else:
        assert _ok_num(n, False) and _ok_num(bits) and _ok_num(other, False)
        assert all(math.isfinite(v) for v in (rows[0]["bytes"], rows[0]["vs_fp32"]) if n or other)
    try:
        d = decode_table({"x": n}, {"m": bw})
    except (ValueError, TypeError):
        return
    assert _ok_num(n) and _ok_num(bw)
    assert math.isfinite(d[0]["tokens_per_s"]) and d[0]["seconds"] == stream_seconds(n, bw)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(F.names()), row=st.one_of(st.none(), st.integers(-3, 4096), st.floats()),
       rows=st.one_of(st.none(), st.integers(-3, 64)),
       opts=st.sampled_from([{}, {"group_size": 32}, {"granularity": "bogus"}, {"nope": 1}]))  # fmt: skip
def test_effective_bits(name, row, rows, opts):
    try:
        v = effective_bits(name, row, rows, **opts)
    except (ValueError, TypeError):
        return
    assert math.isfinite(v) and v > 0


@settings(max_examples=40, deadline=None)
@given(bits=st.one_of(st.integers(-2, 40), st.floats(allow_nan=True), st.just("4")),
       row=st.one_of(st.none(), st.integers(-3, 300)))  # fmt: skip
def test_formats_with_bits(bits, row):
    try:
        names = formats_with_bits(bits, row)
    except (ValueError, TypeError):
        return
    assert all(bits <= F.get(n).bits_per_weight < bits + 1 for n in names)


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from([(0, 32), (1, 32), (4, 64), (3, 7), (32,)]), exp=st.integers(-40, 38),
       names=st.lists(st.sampled_from(["int8", "int4", "q4_0", "q8_0", "fp8_e4m3", "nvfp4", "nope"]), min_size=1, max_size=3),
       dtype=st.sampled_from(["float32", "float64", "complex64", "U3"]))  # fmt: skip
def test_compare_formats(shape, exp, names, dtype):
    with np.errstate(all="ignore"):
        x = (np.random.default_rng(0).standard_normal(shape) * 10.0**exp).astype(np.float32)
        x[~np.isfinite(x)] = 1.0
        xin = x.astype(dtype)
    try:
        rows = compare_formats(xin, names)
    except (ValueError, TypeError):
        return
    assert [r["format"] for r in rows] == names
    for r in rows:
        assert not math.isnan(r["sqnr_db"]) and not math.isnan(r["mse"]), r
