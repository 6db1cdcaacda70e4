"""Property test of qlab.eval (issue 11, "the rule from now on"): perplexity, KL and the KL report
on random windows, protocols, logits shapes and magnitudes give a correct result or
ValueError/TypeError -- never NaN from finite input, never another exception type."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlab
from qlab import eval as qeval

TEXT = qeval.wikitext2_test()[:20_000]


@pytest.fixture(scope="module")
def smol():
    return qlab.models.load("smollm2-135m", progress=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(window=st.sampled_from([0, -4, 1, 2, 16, 3.5, "16", None, 10**6]),
       windows=st.sampled_from([0, -1, 1, 2, 1.0, "2", 10**5]),
       protocol=st.sampled_from(["full-window", "llama-perplexity", "llama", "", None, 3]),
       text=st.sampled_from([TEXT, "", "a", None, 12, TEXT[:200]]))  # fmt: skip
def test_perplexity_result_or_clear_error(smol, window, windows, protocol, text):
    try:
        ppl = qeval.perplexity(smol, text, window=window, windows=windows, progress=False, protocol=protocol)
    except (ValueError, TypeError):
        return
    assert isinstance(ppl, float) and math.isfinite(ppl) and ppl >= 1.0


def _logits(seed: int, shape: tuple[int, ...], exp: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).mul(10.0**exp).float()


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**16), a=st.sampled_from([(4, 7), (1, 3, 7), (0, 7), (4, 1), (7,)]),
       b=st.sampled_from([(4, 7), (1, 3, 7), (4, 8), (0, 7)]), exp=st.integers(-30, 30),
       dtype=st.sampled_from([torch.float32, torch.float16, torch.float64, torch.int64, torch.complex64]))  # fmt: skip
def test_kl_divergence_result_or_clear_error(seed, a, b, exp, dtype):
    ref = _logits(seed, a, exp)
    q = _logits(seed + 1, b, exp)
    with np.errstate(all="ignore"):
        q = q.to(dtype) if dtype != torch.complex64 else q.to(dtype)
    if not bool(torch.isfinite(q.real if q.is_complex() else q.double()).all()):
        return  # float16 overflow at large magnitudes: not finite input any more
    try:
        r = qeval.kl_divergence(ref, q)
    except (ValueError, TypeError):
        return
    assert all(math.isfinite(v) for v in r.values()), r
    assert r["kl"] >= -1e-6 and 0.0 <= r["top1"] <= 1.0
