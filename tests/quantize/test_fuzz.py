"""Property test of qlab.quantize (issue 11, "the rule from now on"): ``quantize_`` with
WeightOnlyConfig / PTQConfig on small real torch models of random shapes, bits, group sizes and
weights (NaN/Inf included), and GPTQ on random layers, give a correct result or
ValueError/TypeError -- never NaN from finite input, never another exception type, and a model
that raised is left as it was."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import qlab
from qlab.quantize import PTQConfig, WeightOnlyConfig, gptq

FORMATS = ["int8", "int4", "int3", "int2", "q4_0", "q8_0", "q4_k", "nf4", "fp8_e4m3", "mxfp4", "nvfp4", "nope"]


@st.composite
def models(draw):
    torch.manual_seed(draw(st.integers(0, 1000)))
    d_in = draw(st.sampled_from([8, 32, 64, 256]))
    d_hid = draw(st.sampled_from([4, 32, 64]))
    m = nn.Sequential(nn.Linear(d_in, d_hid), nn.ReLU(), nn.Linear(d_hid, 3))
    scale = 10.0 ** draw(st.integers(-30, 30))
    poison = draw(st.sampled_from([None, None, None, "nan", "inf"]))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
        if poison:
            m[2].weight[0, 0] = float(poison)
    return m, d_in


def _state(m: nn.Module) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in m.parameters()]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mm=models(), fmt=st.sampled_from(FORMATS),
       opts=st.sampled_from([{}, {"group_size": 32}, {"symmetric": False}, {"granularity": "tensor"},
                             {"group_size": 7}, {"granularity": "bogus"}]),
       include=st.sampled_from([None, ["0"], ["nothing*"]]))  # fmt: skip
def test_weight_only(mm, fmt, opts, include):
    m, _ = mm
    before = _state(m)
    finite = include == ["0"] or all(np.isfinite(b).all() for b in before)  # the poison is in layer 2
    try:
        cfg = WeightOnlyConfig(recipe=(fmt, opts) if opts else fmt, include=include)
        rep = qlab.quantize_(m, cfg)
    except (ValueError, TypeError):
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, _state(m), strict=True)), "model changed"
        return
    assert finite, "NaN/Inf weights were quantized silently"
    for p in (m[0].weight,) if include == ["0"] else (m[0].weight, m[2].weight):
        assert torch.isfinite(p).all() or fmt.startswith("fp8"), f"{fmt} {opts}: NaN/Inf from finite weights"
    assert math.isfinite(rep.bits_per_weight) and rep.bits_per_weight > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mm=models(), w=st.sampled_from(["int8", "int4", None, "q4_0"]), a=st.sampled_from(["int8", "fp8_e4m3", None]),
       obs=st.sampled_from(["minmax", "percentile", "mse", "bogus"]),
       batch=st.sampled_from(["ok", "ok", "wrong_features", "int", "nan", "empty"]))  # fmt: skip
def test_ptq(mm, w, a, obs, batch):
    m, d_in = mm
    x = torch.randn(4, d_in)
    data = {"ok": [x], "wrong_features": [torch.randn(4, d_in + 1)], "int": [torch.ones(4, d_in, dtype=torch.int64)],
            "nan": [x.clone().fill_(float("nan"))], "empty": []}[batch]  # fmt: skip
    before = _state(m)
    with torch.no_grad():
        y_float = m(x)
    try:
        qlab.quantize_(m, PTQConfig(weights=w, activations=a, observer=obs, progress=False), calibration=data)
    except (ValueError, TypeError):
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, _state(m), strict=True)), "model changed"
        return
    assert all(np.isfinite(b).all() for b in before), "NaN/Inf weights were quantized silently"
    assert batch == "ok" or a is None, f"accepted {batch} calibration"  # weight-only PTQ does not use it
    with torch.no_grad():
        y = m(x)
    if torch.isfinite(y_float).all():  # weights of 1e30 overflow float32 even unquantized
        assert not torch.isnan(y).any(), "NaN output from finite input"


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 8), cols=st.sampled_from([8, 32, 64, 96]), bits=st.integers(2, 8),
       group=st.sampled_from([None, 8, 32, 5]), act_order=st.booleans(), sym=st.booleans(),
       scale=st.integers(-20, 20), dead=st.booleans(), poison=st.sampled_from([None, "w", "h"]))  # fmt: skip
def test_gptq_layer(rows, cols, bits, group, act_order, sym, scale, dead, poison):
    g = torch.Generator().manual_seed(rows * 1000 + cols)
    w = torch.randn(rows, cols, generator=g) * 10.0**scale
    x = torch.randn(3 * cols, cols, generator=g)
    if dead:
        x[:, 0] = 0
    h = x.T @ x / len(x)
    if poison == "w":
        w[0, 0] = float("nan")
    elif poison == "h":
        h[1, 1] = float("inf")
    opts = {"symmetric": sym, **({"granularity": "group", "group_size": group} if group else {})}
    try:
        grid = gptq.int_grid(qlab.quantize.recipes.Spec(f"int{bits}", opts))
        res = gptq.gptq_quantize(w, h, grid, act_order=act_order)
    except (ValueError, TypeError):
        assert poison or (group and cols % group), "a valid layer raised"
        return
    assert poison is None
    assert torch.isfinite(res.weight).all(), "NaN/Inf from finite input"
    dec = qlab.formats.get(grid.spec).decode(gptq.encoded(res, grid))
    np.testing.assert_array_equal(dec, res.weight.numpy())  # the codes are real: they decode to the weights
