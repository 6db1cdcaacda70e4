"""Truncated SVD and low-rank error compensation (qlab.quantize.lowrank) against numpy's SVD and
the Eckart-Young optimum (the best rank-r error is the sum of the discarded squared singular
values), on random and real MiniLM weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlab import formats
from qlab.quantize import lowrank as LR
from qlab.quantize.recipes import Spec


def mat(rows: int = 96, cols: int = 160, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    # decaying spectrum, like trained weights
    a = g.standard_normal((rows, 24)) @ g.standard_normal((24, cols)) + 0.3 * g.standard_normal((rows, cols))
    return torch.from_numpy(a.astype(np.float32))


@pytest.mark.parametrize("rank", [0, 1, 8, 24, 96])
def test_truncated_svd_equals_numpy_and_eckart_young(rank: int) -> None:
    w = mat()
    lr = LR.truncated_svd(w, rank=rank, dtype="float32")
    U, s, Vt = np.linalg.svd(w.numpy().astype(np.float64), full_matrices=False)
    ref = (U[:, :rank] * s[:rank]) @ Vt[:rank]
    np.testing.assert_allclose(lr.product().numpy(), ref, atol=2e-5)
    err = float(((w.double() - lr.product().double()) ** 2).sum())
    opt = float((s[rank:] ** 2).sum())
    assert err == pytest.approx(opt, rel=1e-4, abs=1e-6)
    assert LR.eckart_young_error(w, rank) == pytest.approx(opt, rel=1e-9, abs=1e-9)
    assert lr.nbytes == 4 * rank * (96 + 160)


def test_svd_beats_other_rank_r_approximations() -> None:
    """Eckart-Young: no rank-8 matrix is closer; try least-squares fits on random subspaces."""
    w = mat(seed=1).double()
    best = LR.eckart_young_error(w.float(), 8)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        q, _ = torch.linalg.qr(torch.randn(96, 8, generator=g, dtype=torch.float64))
        approx = q @ (q.T @ w)  # best approximation with that column space
        assert float(((w - approx) ** 2).sum()) > best


def test_float16_factors_bytes_and_error() -> None:
    w = mat()
    lr = LR.truncated_svd(w, rank=16)
    assert lr.left.dtype == torch.float32 and torch.equal(lr.left, lr.left.half().float())
    assert lr.nbytes == 2 * 16 * (96 + 160)
    err = float(((w.double() - lr.product().double()) ** 2).sum())
    assert err == pytest.approx(LR.eckart_young_error(w, 16), rel=1e-2)


def test_rank_for_energy_matches_a_loop() -> None:
    w = mat(seed=2)
    s = np.linalg.svd(w.numpy().astype(np.float64), compute_uv=False)
    tot = (s**2).sum()
    for energy in (0.5, 0.9, 0.99, 1.0):
        r = next(i for i in range(1, len(s) + 1) if (s[:i] ** 2).sum() >= energy * tot * (1 - 1e-12))
        assert LR.rank_for_energy(torch.from_numpy(s), energy) == r
        assert LR.truncated_svd(w, energy=energy).rank == r


@pytest.mark.parametrize("fmt,opts", [("int4", {"granularity": "group", "group_size": 32, "symmetric": False}),
                                      ("int3", {"granularity": "channel"})])  # fmt: skip
def test_compensation_is_svd_of_the_quantization_error(fmt: str, opts: dict) -> None:
    w = mat(seed=3)
    spec = Spec(fmt, opts)
    c = LR.compensate(w, spec, rank=8, dtype="float32")
    q = formats.roundtrip(w.numpy(), spec, **opts)
    enc = formats.get(spec).encode(w.numpy(), **opts)
    assert np.array_equal(c.quantized.numpy(), q)
    e = w.numpy().astype(np.float64) - q
    s = np.linalg.svd(e, compute_uv=False)
    err = float(((w.double() - c.weight.double()) ** 2).sum())
    assert err == pytest.approx((s[8:] ** 2).sum(), rel=1e-3)
    assert err < (e**2).sum()
    assert c.nbytes == enc.nbytes + 4 * 8 * (96 + 160)
    full = LR.compensate(w, spec, rank=96, dtype="float32")
    np.testing.assert_allclose(full.weight.numpy(), w.numpy(), atol=1e-5)


def test_apply_on_minilm_layer_bytes_and_untouched_on_error() -> None:
    import qlab.models

    m = qlab.models.load("minilm-l6", progress=False).fresh()
    name = "encoder.layer.0.attention.self.query"
    mod = dict(m.model.named_modules())
    keys = [k for k in mod if k.endswith(name)]
    assert keys, "MiniLM layout changed"
    w0 = mod[keys[0]].weight.detach().float().clone()
    rep = LR.apply(m, f"*{name}", spec=Spec("int4", {"granularity": "group", "group_size": 32}), rank=8)
    (row,) = rep.layers
    enc = formats.get("int4").encode(w0.numpy(), granularity="group", group_size=32)
    assert row.nbytes == enc.nbytes + 2 * 8 * (384 + 384)
    assert torch.equal(mod[keys[0]].weight.detach(), LR.compensate(w0, Spec("int4", {"granularity": "group",
                                                                                     "group_size": 32}), 8).weight)  # fmt: skip
    with pytest.raises(ValueError, match="already"):
        LR.apply(m, f"*{name}", rank=4)


@pytest.mark.parametrize("kw,match", [({}, "give spec"), ({"spec": "int4", "energy": 0.9}, "rank, not energy"),
                                      ({"rank": 2, "energy": 0.5}, "exactly one")])  # fmt: skip
def test_validation(kw: dict, match: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8))
    with pytest.raises(ValueError, match=match):
        LR.apply(model, **kw)
    assert not hasattr(model, "_qlab_quantized")


def test_function_validation() -> None:
    with pytest.raises(ValueError, match="rank must be"):
        LR.truncated_svd(mat(), rank=1000)
    with pytest.raises(ValueError, match="energy"):
        LR.truncated_svd(mat(), energy=1.5)
    with pytest.raises(ValueError, match="2-D"):
        LR.truncated_svd(torch.zeros(3), rank=1)
