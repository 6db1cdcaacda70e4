"""Mixed precision under a byte budget: exact byte accounting, allocation quality, held-out gain."""
# ruff: noqa: F811  (test arguments named after the imported fixtures)

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pytest
import torch

import qlab
from qlab.core import lm
from qlab.quantize import WeightSnapshot, mixed, quantize_model
from qlab.quantize.mixed import (
    GroupCosts,
    _hull,
    allocate,
    mixed_precision,
    tensor_bytes,
    uniform_bytes,
    uniform_within,
)
from qlab.quantize.recipes import spec
from tests.quantize._fixtures import single_thread, smol  # noqa: F401  (pytest fixtures)

INT3 = ("int3", {"granularity": "group", "group_size": 64, "symmetric": False})  # 3.625 bits/weight
# q8_0 / q5_0 / q4_0 all fit SmolLM2's rows of 576 and 1536 (32-blocks), so nothing falls back. The
# budget is uniform q5_0's size: the mix can buy 8-bit for sensitive tensor types with 4-bit elsewhere.
# (At uniform q4_0's size the only cheaper option would be a very lossy 3-bit one: the predicted gain
# there is below what non-additive damage and calibration noise eat, so no honest claim is possible.)
CANDS = ("q8_0", "q5_0", "q4_0")
BASE = "q5_0"
# one group per tensor type (8 groups: embedding, q, k, v, o, gate, up, down across the 30 blocks)
GROUPS = "type"


@pytest.fixture(scope="module")
def scan(smol):
    """One sensitivity scan on calibration_text() (2 windows of 128 tokens), at uniform q5_0's size."""
    m = smol.fresh()
    budget = uniform_bytes(m, BASE)
    res = mixed_precision(m, budget, CANDS, by=GROUPS, window=128, windows=2)
    return m, budget, res


def test_tensor_bytes_is_exact():
    rng = np.random.default_rng(0)
    for fmt, shape in [("q4_k", (3, 512)), ("q8_0", (5, 64)), (INT3, (7, 128)), (("int3", {"granularity": "tensor"}), (5, 7)),
                       (("int2", {"granularity": "channel"}), (3, 9)), ("nf4", (2, 128))]:  # fmt: skip
        s = spec(fmt)
        x = rng.normal(size=shape).astype(np.float32)
        assert tensor_bytes(s, shape) == qlab.formats.get(s).encode(x, **s.options).nbytes, (fmt, shape)


def test_uniform_bytes_equal_quant_report(smol):
    m = smol.fresh()
    snap = WeightSnapshot(m)
    for f in ("q3_k", INT3):  # q3_k: 576-wide rows fall back to q4_0
        assert uniform_bytes(m, f) == quantize_model(m, f, source=snap).total_bytes
    snap.restore(m)


def test_budget_respected_exactly(scan):
    m, budget, res = scan
    snap = WeightSnapshot(m)
    assert res.total_bytes <= budget and len(res.choice) == 8
    rep = quantize_model(m, res.recipe, source=snap)
    assert rep.total_bytes == res.total_bytes <= budget
    # a tighter budget (between uniform q4_0 and uniform q5_0) is still met
    low = uniform_bytes(m, "q4_0")
    mid = (low + budget) // 2
    tight = mixed_precision(m, mid, CANDS, res.sensitivity, by=GROUPS)
    assert quantize_model(m, tight.recipe, source=snap).total_bytes == tight.total_bytes <= mid
    assert tight.predicted_delta >= res.predicted_delta  # fewer bytes, no less predicted damage
    snap.restore(m)


def test_beats_uniform_on_held_out_text(scan):
    """Sensitivity was measured on calibration_text(); the comparison uses WikiText-2 test's first
    windows (qlab.eval's evaluation text), which calibration_text() never reads. The mix must be
    no larger than uniform q5_0 and cut the held-out KL by at least 5 % (measured: about 15 %)."""
    m, budget, res = scan
    assert uniform_within(m, budget, CANDS) == BASE
    assert len(set(res.choice.values())) > 1, res.choice  # a real mix, not the uniform fallback
    uniform_predicted = sum(c.delta[CANDS.index(BASE)] for c in res.costs.values())
    assert res.predicted_delta < uniform_predicted
    snap = WeightSnapshot(m)
    ref = lm.reference(m, None, 128, 2, torch.float16, progress=False, batch=4)
    mixed_bytes = quantize_model(m, res.recipe, source=snap).total_bytes
    mixed = lm.compare(m, ref, progress=False, batch=4)
    uniform_bytes_ = quantize_model(m, BASE, source=snap).total_bytes
    uniform = lm.compare(m, ref, progress=False, batch=4)
    snap.restore(m)
    assert mixed_bytes == res.total_bytes <= uniform_bytes_ == budget
    assert mixed["kl"] < 0.95 * uniform["kl"], (res.choice, mixed, uniform)


@contextlib.contextmanager
def _greedy_only():
    old, mixed.EXACT_LIMIT = mixed.EXACT_LIMIT, 0
    try:
        yield
    finally:
        mixed.EXACT_LIMIT = old


def test_allocation_near_optimal():
    """Enumeration finds the brute-force optimum; the greedy on the convex hulls (used when there are
    too many combinations) is within one hull step of it."""
    rng = np.random.default_rng(0)
    for _ in range(30):
        costs = {}
        for g in range(5):
            nb = sorted(rng.integers(10, 100, size=3).tolist())
            dl = sorted(rng.exponential(size=3).tolist(), reverse=True)
            costs[f"g{g}"] = GroupCosts([f"g{g}"], ["x"] * 3, nb, dl)
        lo, hi = sum(c.nbytes[0] for c in costs.values()), sum(c.nbytes[-1] for c in costs.values())
        budget = int(rng.integers(lo, hi + 1))
        pick = allocate(costs, budget)  # 3**5 combinations: enumerated, so exactly the optimum
        assert sum(costs[g].nbytes[i] for g, i in pick.items()) <= budget
        got = sum(costs[g].delta[i] for g, i in pick.items())
        best = min(sum(c.delta[i] for c, i in zip(costs.values(), combo, strict=True))
                   for combo in itertools.product(range(3), repeat=5)
                   if sum(c.nbytes[i] for c, i in zip(costs.values(), combo, strict=True)) <= budget)  # fmt: skip
        step = max(c.delta[h[k]] - c.delta[h[k + 1]] for c in costs.values()
                   for h in [_hull(c.nbytes, c.delta)] for k in range(len(h) - 1)) if budget < hi else 0.0  # fmt: skip
        assert got == pytest.approx(best, abs=1e-12)
        with _greedy_only():
            pick = allocate(costs, budget)
        assert sum(costs[g].nbytes[i] for g, i in pick.items()) <= budget
        got = sum(costs[g].delta[i] for g, i in pick.items())
        assert best - 1e-12 <= got <= best + step + 1e-12


def test_bad_input(scan):
    m, budget, res = scan
    floor = uniform_bytes(m, "q4_0")
    with pytest.raises(ValueError, match="below the smallest candidate"):
        mixed_precision(m, floor - 1, CANDS, res.sensitivity, by=GROUPS)
    with pytest.raises(ValueError, match="candidates is empty"):
        mixed_precision(m, budget, (), res.sensitivity, by=GROUPS)
    with pytest.raises(ValueError, match="unknown"):
        mixed_precision(m, budget, ("q9_9",), res.sensitivity, by=GROUPS)
    with pytest.raises(ValueError, match="no result for candidate"):
        mixed_precision(m, uniform_bytes(m, "q8_0"), ("q8_0", "q6_k"), res.sensitivity, by=GROUPS)
    with pytest.raises(ValueError, match="budget_bytes must be a positive integer"):
        mixed_precision(m, -5, CANDS, res.sensitivity, by=GROUPS)
