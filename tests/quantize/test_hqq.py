"""HQQ (qlab.quantize.hqq) against the reference implementation, the ``hqq`` package
(``hqq.core.quantize.Quantizer.quantize``, default solver ``optimize_weights_proximal_legacy``),
on the same tensors: random heavy-tailed ones and real SmolLM2 weights.

Both run the same float32 torch operations in the same order on CPU, so the codes, the
(inverted) scales and the zero-points are compared exactly (``torch.equal``), not within a
tolerance. With ``meta_dtype="float16"`` qlab rounds the stored scale/zero to float16 (what
``HQQLinear`` keeps); the codes stay those of the package.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("hqq")
from hqq.core.quantize import Quantizer  # noqa: E402

import qlab  # noqa: E402
from qlab.quantize import HQQConfig, quantize_  # noqa: E402
from qlab.quantize import hqq as H  # noqa: E402
from tests.quantize._fixtures import single_thread, smol  # noqa: E402, F401


def reference(w: torch.Tensor, bits: int, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes (rows, cols), scale (rows, groups), zero (rows, groups)) from the hqq package, axis=1."""
    q, meta = Quantizer.quantize(w.clone(), nbits=bits, group_size=group, optimize=True, axis=1, bitpack=False,
                                 device="cpu", compute_dtype=torch.float32)  # fmt: skip
    rows, cols = w.shape
    deq = Quantizer.dequantize(q, {**meta, "compute_dtype": torch.float32})
    assert deq.shape == w.shape
    return q.reshape(rows, cols), meta["scale"].reshape(rows, -1), meta["zero"].reshape(rows, -1)


def heavy(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.distributions.StudentT(3.0).sample((rows, cols)) if seed % 2 else torch.randn(rows, cols, generator=g)
    return (0.02 * t).float()


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("group", [16, 32, 64, 128])
def test_same_codes_scale_zero_as_hqq_package(bits: int, group: int) -> None:
    torch.manual_seed(bits * 1000 + group)
    w = heavy(96, 256, seed=bits + group)
    q_ref, s_ref, z_ref = reference(w, bits, group)
    res = H.hqq_quantize(w, bits, group, meta_dtype="float32")
    assert torch.equal(res.codes, q_ref)
    assert torch.equal(res.scale, s_ref)
    assert torch.equal(res.zero, z_ref)
    assert torch.equal(res.weight, ((q_ref - z_ref.repeat_interleave(group, 1)) * s_ref.repeat_interleave(group, 1)))
    assert 1 <= res.steps <= 20


@pytest.mark.parametrize("bits,group", [(4, 64), (3, 32), (2, 16)])
def test_real_smollm2_weights_match_package(smol, bits: int, group: int) -> None:  # noqa: F811
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.5.mlp.down_proj"):
        w = smol.model.get_submodule(name).weight.detach().float()[:128]
        q_ref, s_ref, z_ref = reference(w, bits, group)
        res = H.hqq_quantize(w, bits, group, meta_dtype="float32")
        assert torch.equal(res.codes, q_ref), name
        assert torch.equal(res.zero, z_ref), name
        # float16 storage: same codes, scale/zero rounded to float16
        r16 = H.hqq_quantize(w, bits, group)
        assert torch.equal(r16.codes, q_ref)
        assert torch.equal(r16.scale, s_ref.half().float())
        assert torch.equal(r16.zero, z_ref.half().float())


def test_hqq_lowers_its_objective_vs_minmax_start() -> None:
    """The solver's own criterion (mean |w - w_r|) is below the min-max grid's (iters=1 is the
    min-max zero-point plus one update, iters=0 is impossible: compare with RTN on a float zero)."""
    w = heavy(64, 512, seed=3)
    res = H.hqq_quantize(w, 3, 64, meta_dtype="float32")
    W = w.reshape(-1, 64)
    lo, hi = W.min(1, keepdim=True)[0], W.max(1, keepdim=True)[0]
    inv = 7.0 / (hi - lo)
    rtn = ((torch.round(W * inv - lo * inv).clamp(0, 7) + lo * inv) / inv).reshape(w.shape)
    assert (w - res.weight).abs().mean() < (w - rtn).abs().mean()


def test_shrink_lp_is_the_proximal_operator() -> None:
    """prox of |e|^p/beta at x minimises beta/2 (e - x)^2 + |e|^p over e (brute force on a grid)."""
    x = torch.linspace(-1.0, 1.0, 41, dtype=torch.float64)
    beta, p = 10.0, 1.0
    e = torch.linspace(-1.5, 1.5, 300_001, dtype=torch.float64)
    obj = beta / 2 * (e[None] - x[:, None]) ** 2 + e[None].abs() ** p
    best = e[obj.argmin(1)]
    assert torch.allclose(H.shrink_lp(x, beta, p), best, atol=1e-5)


def test_quantize_model_and_bytes(smol) -> None:  # noqa: F811
    m = smol.fresh()
    cfg = HQQConfig(weights="int4", group_size=64, include="model.layers.0.*")
    rep = quantize_(m, cfg)
    assert len(rep.layers) == 7
    for r in rep.layers:
        rows, cols = r.shape
        assert r.nbytes == rows * cols // 2 + rows * (cols // 64) * 4  # 4-bit codes + fp16 scale + fp16 zero
        assert r.bits_per_weight == pytest.approx(4.5)
    w = m.model.get_submodule("model.layers.0.mlp.up_proj").weight.detach().float()
    w0 = smol.model.get_submodule("model.layers.0.mlp.up_proj").weight.detach().float()
    assert torch.equal(w, H.hqq_quantize(w0, 4, 64).weight)
    assert "HQQConfig" in qlab.quantize.api.methods()
    with pytest.raises(ValueError, match="already quantized"):
        quantize_(m, cfg)


@pytest.mark.parametrize(
    "kw,match",
    [({"weights": "fp8_e4m3"}, "integer grid"), ({"group_size": None}, "group_size"), ({"lp_norm": 1.5}, "lp_norm"),
     ({"meta_dtype": "bf16"}, "meta_dtype"), ({"iters": 0}, "iters"), ({"activations": "int8"}, "weight-only")],
)  # fmt: skip
def test_config_validation(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HQQConfig(**kw)


def test_function_validation() -> None:
    w = torch.randn(4, 64)
    with pytest.raises(ValueError, match="group_size"):
        H.hqq_quantize(w, 4, 48)
    with pytest.raises(ValueError, match="bits"):
        H.hqq_quantize(w, 9, 64)
    with pytest.raises(ValueError, match="NaN"):
        H.hqq_quantize(w.masked_fill(w > 1, float("nan")), 4, 64)


def test_smollm2_is_q4_1_so_hqq_int4_g32_is_lossless(smol) -> None:  # noqa: F811
    """SmolLM2's float weights are its published Q4_1 file dequantized (groups of 32, 16 levels,
    float scale and minimum): HQQ's min-max start with a float zero-point is that grid, so int4 g32
    reproduces the weights to float rounding, which RTN's integer zero-point (range widened to 0)
    does not. This is why HQQ "wins" at int4 g32 on this model (scripts/beyond_rtn.py)."""
    import numpy as np

    from qlab import formats

    w = smol.model.get_submodule("model.layers.3.mlp.up_proj").weight.detach().float()
    exact = H.hqq_quantize(w, 4, 32, meta_dtype="float32")
    assert (exact.weight - w).abs().max().item() < 1e-5
    assert (H.hqq_quantize(w, 4, 64, meta_dtype="float32").weight - w).abs().max().item() > 1e-2
    rtn = formats.roundtrip(w.numpy(), "int4", granularity="group", group_size=32, symmetric=False)
    assert np.abs(rtn - w.numpy()).max() > 1e-2
