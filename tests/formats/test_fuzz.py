"""Property test of every format (issue 11, "the rule from now on"): random shapes, dtypes,
magnitudes and options give a correct-shaped finite result or a ValueError/TypeError -- never
NaN/Inf from finite input, never another exception type. Tampered encodings are in
test_encoded_parts.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlab.formats as F

ALL = F.names()
DTYPES = ["float32"] * 6 + ["float16", "bfloat16", "float64", "int32"]  # mostly valid input


@st.composite
def inputs(draw):
    rows = draw(st.integers(0, 3))
    cols = draw(st.sampled_from([1, 7, 32, 64, 96, 256]))
    exp = draw(st.integers(-45, 38))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).standard_normal((rows, cols)) * 10.0**exp
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32)
        x32[~np.isfinite(x32)] = np.finfo(np.float32).max  # finite, up to the float32 maximum
        if dtype == "bfloat16":
            return torch.from_numpy(x32).bfloat16()
        return x32.astype(dtype) if dtype != "float32" else x32


OPTIONS = st.sampled_from([{}, {}, {}, {"granularity": "tensor"}, {"granularity": "channel"},
                           {"granularity": "group", "group_size": 32}, {"symmetric": False}, {"block_size": 64},
                           {"granularity": "bogus"}, {"nope": 1}])  # fmt: skip


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=inputs(), options=OPTIONS)
def test_correct_result_or_a_clear_error(name, x, options):
    fmt = F.get(name)
    if getattr(fmt, "requires_imatrix", False) and x.shape[-1] % 256 == 0:
        options = {**options, "imatrix": np.ones(x.shape[-1], np.float32)}
    try:
        with np.errstate(all="ignore"):
            y = fmt.decode(fmt.encode(x, **options))
    except (ValueError, TypeError):
        return
    assert y.shape == tuple(x.shape) and y.dtype == np.float32
    finite_in = np.isfinite(x.float().numpy() if isinstance(x, torch.Tensor) else x.astype(np.float32))
    opts = fmt.options(**options)
    # a plain cast (fp16, bf16, e8m0 without a scale) overflows to Inf as IEEE / OCP define it
    # (lesson 04 shows it); NaN from finite input is never acceptable
    bad = finite_in & (np.isnan(y) if opts.get("granularity") == "none" else ~np.isfinite(y))
    assert not bad.any(), f"{name} {options}: {int(bad.sum())} NaN/Inf from finite input, e.g. x={x.ravel()[np.argmax(bad.ravel())]}"
