"""LLM.int8() pipeline (qlab.quantize.llm_int8) on real SmolLM2 layers and activations.

References: qlab's ``llm_int8_linear`` (itself tested against bitsandbytes' ``Linear8bitLt``), the
real ``Linear8bitLt`` for threshold=inf vs bitsandbytes' own no-outlier path (threshold 0), and an
independent torch computation of vector-wise int8 and of the outlier columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import qlab
from qlab.backends import bitsandbytes as bnbb
from qlab.eval import calibration_text
from qlab.quantize import LLMInt8Config
from qlab.quantize.llm_int8 import LLMInt8Linear, outlier_report
from tests.quantize._fixtures import single_thread, smol  # noqa: F401

LAYER = "model.layers.29.mlp.down_proj"  # its input holds hundreds of columns with |x| >= 6


@pytest.fixture(scope="module")
def layer_io(smol: Any) -> tuple[torch.nn.Linear, torch.Tensor]:  # noqa: F811
    """The real down_proj of block 29 and the real activations entering it (128 tokens)."""
    lin = smol.model.get_submodule(LAYER)
    got: dict[str, torch.Tensor] = {}
    h = lin.register_forward_pre_hook(lambda _m, a: got.update(x=a[0].detach().clone()))
    ids = qlab.eval.token_windows(smol, calibration_text(20_000), 128, 1)
    with torch.inference_mode():
        smol.model(input_ids=ids)
    h.remove()
    return lin, got["x"]


def test_module_equals_llm_int8_linear(layer_io: Any) -> None:
    lin, x = layer_io
    assert len(bnbb.outlier_columns(x, 6.0)) > 10  # the decomposition is really exercised
    for thr in (6.0, 2.0):
        mod = LLMInt8Linear(lin, thr, LAYER)
        with torch.inference_mode():
            y = mod(x)
        assert torch.equal(y, bnbb.llm_int8_linear(x, lin.weight, lin.bias, thr))  # bit for bit


def _vectorwise_int8(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Independent LLM.int8 without outliers: fp16 inputs, absmax int8 per token and per weight row."""
    a = x.reshape(-1, x.shape[-1]).half().float()
    w16 = w.detach().half().float()
    sa, sw = a.abs().amax(1, keepdim=True) / 127, w16.abs().amax(1, keepdim=True) / 127
    qa, qw = torch.round(a / sa), torch.round(w16 / sw)
    return ((qa.double() @ qw.double().T) * sa.double() * sw.double().T).float()


def test_threshold_inf_is_plain_vectorwise_int8(layer_io: Any) -> None:
    lin, x = layer_io
    mod = LLMInt8Linear(lin, float("inf"), LAYER)
    with torch.inference_mode():
        y = mod(x).reshape(-1, lin.out_features)
        y6 = LLMInt8Linear(lin, 6.0, LAYER)(x).reshape(-1, lin.out_features)
        ref = _vectorwise_int8(x, lin.weight)
        y_float = lin(x).reshape(-1, lin.out_features)
        bnb_plain = bnbb.quantized_linear(lin, "int8", threshold=0.0)(x).reshape(-1, lin.out_features)
    assert torch.equal(y, bnbb.llm_int8_linear(x, lin.weight, lin.bias, 0.0).reshape(y.shape))  # bnb's "off" switch
    # rounding of near-ties (x * (127/max) vs x * (1/(max/127))) and bnb's 1/127**2 literal: ~1e-4 relative
    scale = y_float.abs().max()
    assert (y - ref).abs().max() < 2e-3 * scale
    assert (y - bnb_plain).abs().max() < 2e-3 * scale  # the real Linear8bitLt(threshold=0)
    # and the decomposition matters on this layer: threshold 6 is much closer to float
    assert (y6 - y_float).abs().mean() < 0.5 * (y - y_float).abs().mean()


def test_quantize_replaces_linears_and_counts_outliers(smol: Any) -> None:  # noqa: F811
    m = smol.fresh()
    emb = m.model.model.embed_tokens.weight.detach().clone()
    text = calibration_text(5_000)
    rep = qlab.quantize_(m, LLMInt8Config(threshold=6.0, include="model.layers.29.*"), calibration=text)
    names = [r.name for r in rep.layers]
    assert len(names) == 7 and all(isinstance(m.model.get_submodule(n), LLMInt8Linear) for n in names)
    assert isinstance(m.model.get_submodule(LAYER), torch.nn.Linear)  # still a Linear for transformers code
    assert torch.equal(m.model.model.embed_tokens.weight, emb)  # parameters shared, not modified
    r = rep.layer(LAYER)
    assert r.nbytes == 576 * 1536 + 4 * 576 and "outlier col" in r.note
    # the counters against an independent count on the real inputs of the quantized model
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [m.model.get_submodule(n).register_forward_pre_hook(
        lambda _m, a, n=n: seen.setdefault(n, []).append(a[0].detach().clone())) for n in names]  # fmt: skip
    ids = qlab.eval.token_windows(m, text, 64, 2)
    with torch.inference_mode():
        for w in ids:
            m.model(input_ids=w[None])
    for h in hooks:
        h.remove()
    stats = {s["name"]: s for s in outlier_report(m)}
    for n in names:
        cols = [set(torch.nonzero((x.reshape(-1, x.shape[-1]).half().abs() >= 6).any(0)).flatten().tolist())
                for x in seen[n]]  # fmt: skip
        assert stats[n]["columns"] == len(set().union(*cols))
        assert stats[n]["max_per_call"] == max(map(len, cols))
        assert stats[n]["tokens"] == 128 and stats[n]["calls"] == 2
    assert stats[LAYER]["columns"] > 10


def test_bad_input(smol: Any, layer_io: Any) -> None:  # noqa: F811
    lin, x = layer_io
    with pytest.raises(ValueError, match="weights='int4'"):
        qlab.quantize_(torch.nn.Sequential(torch.nn.Linear(4, 4)), LLMInt8Config(weights="int4"))
    with pytest.raises(ValueError, match="activations='fp8_e4m3'"):
        qlab.quantize_(torch.nn.Sequential(torch.nn.Linear(4, 4)), LLMInt8Config(activations="fp8_e4m3"))
    with pytest.raises(ValueError, match="granularity='tensor'"):
        qlab.quantize_(torch.nn.Sequential(torch.nn.Linear(4, 4)), LLMInt8Config(weight_granularity="tensor"))
    with pytest.raises(ValueError, match="no supported layer"):
        qlab.quantize_(torch.nn.Sequential(torch.nn.ReLU()), LLMInt8Config())
    with pytest.raises(ValueError, match="NaN"):
        LLMInt8Linear(lin, 6.0, LAYER)(x.masked_fill(torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
                                                     < 1e-3, float("nan")))
    with pytest.raises(ValueError, match="threshold"):
        LLMInt8Config(threshold=-1.0)
    with pytest.raises(ValueError, match="no LLM.int8"):
        outlier_report(torch.nn.Sequential(torch.nn.Linear(4, 4)))
    assert np.isfinite(x.numpy()).all()
