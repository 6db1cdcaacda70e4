"""SmoothQuant (qlab.quantize.smoothquant) on real SmolLM2 activations.

References: the float model itself (smoothing is an exact re-parametrisation), eq. 4 of the paper
recomputed with numpy from the original weights and the re-captured activations, and the float
layer output (W8A8 error with vs. without smoothing, through the real pipelines).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import qlab
from qlab.eval import calibration_text
from qlab.quantize import PTQConfig, SmoothQuantConfig
from qlab.quantize.calibration import batches
from qlab.quantize.smoothquant import activation_absmax, smooth_, smooth_groups, smoothing_factors
from tests.quantize._fixtures import single_thread, smol  # noqa: F401


def _cal(m: Any, tokens: int = 256) -> list[dict[str, torch.Tensor]]:
    return batches(calibration_text(20_000), m, seq_len=tokens)[:1]


def test_smoothing_alone_keeps_the_float_model(smol: Any) -> None:  # noqa: F811
    m = smol.fresh()
    ids = qlab.eval.token_windows(m, None, 64, 1)
    with torch.inference_mode():
        ref = m.model(input_ids=ids).logits
    groups = smooth_groups(m)
    assert len(groups) == 90  # 30 blocks x (norm->qkv, norm->gate/up, up->down)
    data = _cal(m)
    act = activation_absmax(m, data, [g.linears[0] for g in groups])
    w_before = {n: m.model.get_submodule(n).weight.detach().numpy().copy() for g in groups for n in g.linears}
    scales = smooth_(m, act, 0.5, groups)
    with torch.inference_mode():
        out = m.model(input_ids=ids).logits
    assert max(float((s - 1).abs().max()) for s in scales.values()) > 1  # the weights really changed
    assert (out - ref).abs().max() < 2e-3 * ref.abs().max()  # float rounding only
    assert torch.equal(out.argmax(-1), ref.argmax(-1))

    # the smoothed inputs' per-channel maxima are max|X_j| / s_j = (max|X_j| max|W_j|)^(1 - alpha)
    after = activation_absmax(m, data, [g.linears[0] for g in groups])
    for g in groups:
        a = act[g.linears[0]].double().numpy()
        wmax = np.max([np.abs(w_before[n]).max(0) for n in g.linears], axis=0).astype(np.float64)
        expect = (a * wmax) ** 0.5  # alpha = 0.5
        got = after[g.linears[0]].double().numpy()
        np.testing.assert_allclose(got, expect, rtol=2e-3, atol=1e-5)
        # flattened: where a few channels dominate (max > 10 x median), the spread shrinks
        if a.max() / np.median(a) > 10:
            assert got.max() / np.median(got) < a.max() / np.median(a), g.prev


def test_smoothing_factors_formula() -> None:
    rng = np.random.default_rng(0)
    a = np.abs(rng.standard_normal(16)).astype(np.float32) * 10
    ws = [rng.standard_normal((8, 16)).astype(np.float32) for _ in range(3)]
    wmax = np.max([np.abs(w).max(0) for w in ws], axis=0)
    for alpha in (0.0, 0.25, 0.5, 1.0):
        np.testing.assert_allclose(smoothing_factors(a, ws, alpha).numpy(), a**alpha / wmax ** (1 - alpha), rtol=1e-5)
    a[3] = 0.0  # a dead channel: clamped at 1e-5 as smooth_ln_fcs does, never 0 or inf
    s = smoothing_factors(a, ws, 0.5).numpy()
    assert np.isfinite(s).all() and s[3] == pytest.approx(np.sqrt(1e-5) / np.sqrt(wmax[3]), rel=1e-5)


def test_smoothquant_lowers_w8a8_layer_error(smol: Any) -> None:  # noqa: F811
    """Only block 29's MLP is quantized (its down_proj input reaches hundreds x the median), so
    every variant sees the same float input there: the MLP output error is the layer's own."""
    block = "model.layers.29.mlp"
    ids = qlab.eval.token_windows(smol, None, 128, 1)
    outs: dict[str, torch.Tensor] = {}
    for name, cfg in [("float", None), ("w8a8", PTQConfig(include=f"{block}.*", progress=False)),
                      ("sq", SmoothQuantConfig(alpha=0.5, include=f"{block}.*"))]:
        m = smol.fresh()
        if cfg is not None:
            rep = qlab.quantize_(m, cfg, calibration=_cal(m))
            assert [r.name.rsplit(".", 1)[1] for r in rep.layers] == ["gate_proj", "up_proj", "down_proj"]
        mlp = m.model.get_submodule(block)
        h = mlp.register_forward_hook(lambda _m, _a, o, name=name: outs.update({name: o.detach().clone()}))
        with torch.inference_mode():
            m.model(input_ids=ids)
        h.remove()
    err = {k: float(((outs[k] - outs["float"]) ** 2).mean()) for k in ("w8a8", "sq")}
    assert err["sq"] < 0.7 * err["w8a8"], err


def test_bad_input(smol: Any) -> None:  # noqa: F811
    lin = torch.nn.Sequential(torch.nn.Linear(8, 8))
    with pytest.raises(ValueError, match="calibration"):
        qlab.quantize_(smol.fresh(), SmoothQuantConfig(), calibration=None)
    with pytest.raises(ValueError, match="nf4"):
        qlab.quantize_(lin, SmoothQuantConfig(weights="nf4"), calibration=[torch.ones(2, 8)])
    with pytest.raises(ValueError, match="weights=None"):
        qlab.quantize_(lin, SmoothQuantConfig(weights=None), calibration=[torch.ones(2, 8)])
    with pytest.raises(ValueError, match="no supported layer"):
        qlab.quantize_(torch.nn.Sequential(torch.nn.ReLU()), SmoothQuantConfig(), calibration=[torch.ones(2, 8)])
    with pytest.raises(ValueError, match="input_layernorm"):  # Linear layers, but nothing to fold scales into
        qlab.quantize_(lin, SmoothQuantConfig(), calibration=[torch.ones(2, 8)])
    with pytest.raises(ValueError, match="alpha"):
        SmoothQuantConfig(alpha=1.5)
    with pytest.raises(ValueError, match="NaN"):
        smoothing_factors(np.array([1.0, np.nan]), np.ones((2, 2)), 0.5)
    m = smol.fresh()
    emb = m.model.model.embed_tokens(torch.arange(8)[None]).detach()
    emb[0, 3, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        activation_absmax(m, [{"inputs_embeds": emb}], ["model.layers.0.self_attn.q_proj"])
