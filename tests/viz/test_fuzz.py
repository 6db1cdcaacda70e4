"""Property test of qlab.viz (issue 11, "the rule from now on"): the widgets' state functions on
random controls give a correct state or ValueError/TypeError -- never NaN from finite input, never
another exception type (a widget callback that raises anything else breaks the lesson's panel)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qlab.analysis.chooser import capstone_rows
from qlab.viz.capstone import capstone_state
from qlab.viz.granularity import granularity_state
from qlab.viz.numberline import numberline_state
from qlab.viz.size import size_state

CLEAR = (ValueError, TypeError)
NAMES = st.sampled_from(["fp8_e4m3", "fp4_e2m1", "nf4", "int8", "q4_0", "mxfp4", "bf16", "", "fp3", "Q4_0", None, 7])
DIGITS = capstone_rows("digits-cnn")


@settings(max_examples=40, deadline=None)
@given(name=NAMES)
def test_numberline_state(name):
    try:
        s = numberline_state(name)
    except CLEAR:
        return
    assert isinstance(s, dict) and s


@settings(max_examples=80, deadline=None)
@given(n=st.sampled_from([0, 1, 135_000_000, -5, 2.5, 10**15]), fmt=NAMES,
       bw=st.sampled_from([0.0, -1.0, 1e-9, 25.0, float("nan"), float("inf"), 1e6]),
       row=st.sampled_from([None, 576, 32, 7, 0, -32]))  # fmt: skip
def test_size_state(n, fmt, bw, row):
    try:
        s = size_state(n, fmt, bw, row)
    except CLEAR:
        return
    for k in ("bits_per_weight", "bytes", "seconds", "tokens_per_s"):
        assert math.isfinite(s[k]) or (k == "tokens_per_s" and s["seconds"] == 0), (k, s)


@settings(max_examples=60, deadline=None)
@given(shape=st.sampled_from([(64,), (8, 64), (4, 96), (0, 32), (3,)]), bits=st.sampled_from([2, 4, 8, 0, 1, 9, 4.5]),
       factor=st.sampled_from([1.0, 10.0, 0.0, -3.0, 1e30, float("nan")]),
       group=st.sampled_from([32, 16, 0, -1, 7, 64]), exp=st.integers(-30, 30), seed=st.integers(0, 99))  # fmt: skip
def test_granularity_state(shape, bits, factor, group, exp, seed):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * np.float32(10.0**exp)
    try:
        s = granularity_state(x, bits, factor, group)
    except CLEAR:
        return
    for r in s["rows"]:
        assert not any(isinstance(v, float) and math.isnan(v) for v in r.values()), r


@settings(max_examples=60, deadline=None)
@given(budget=st.sampled_from([None, 0.0, -1.0, 0.01, 0.05, 1e9, float("nan")]),
       loss=st.sampled_from([None, 0.0, 1.0, 50.0, -5.0, float("inf"), float("nan")]),
       mode=st.sampled_from(["size", "accuracy", "speed", ""]))  # fmt: skip
def test_capstone_state(budget, loss, mode):
    rows, metric = DIGITS
    try:
        s = capstone_state(rows, metric, budget, loss, mode)
    except CLEAR:
        return
    assert s["choice"] is None or s["choice"] in s["formats"]
