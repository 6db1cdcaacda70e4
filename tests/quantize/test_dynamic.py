"""Dynamic quantization: run-time activation ranges, bit-exact with qlab.formats; digits and MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qlab import formats
from qlab.eval import accuracy, embedding_similarity, wikitext_sentences
from qlab.models import load
from qlab.models.digits import load_split
from qlab.quantize.api import quantize_
from qlab.quantize.configs import DynamicConfig


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _linear(seed=0, n_in=64, n_out=48):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, n_out))


@pytest.mark.parametrize("act", ["int8", "int4", "fp8_e4m3"])
def test_per_tensor_equals_formats_roundtrip_of_each_batch(act):
    net = _linear()
    w0, b = net[0].weight.detach().clone(), net[0].bias.detach().clone()
    report = quantize_(net, DynamicConfig(weights="int8", activations=act))
    x = torch.randn(5, 7, 64) * 2
    opts = {"symmetric": False} if act.startswith("int") else {}
    xq = formats.roundtrip(x, act, granularity="tensor", **opts)  # the batch's own range, per call
    wq = formats.roundtrip(w0, "int8")
    ref = F.linear(torch.from_numpy(xq), torch.from_numpy(wq), b)
    assert torch.equal(net(x), ref)
    assert report.layers[0].nbytes == formats.get("int8").encode(w0).nbytes
    assert "dynamic per tensor" in report.layers[0].activations


@pytest.mark.parametrize("act", ["int8", "fp8_e5m2"])
def test_per_token_equals_per_row_roundtrip(act):
    net = _linear(1)
    w0, b = net[0].weight.detach().clone(), net[0].bias.detach().clone()
    quantize_(net, DynamicConfig(weights="fp8_e4m3", activations=act, granularity="token"))
    x = torch.randn(3, 11, 64)
    x[0, 4] *= 50  # one loud token: per-token scaling keeps it from coarsening the others
    opts = {"symmetric": False} if act.startswith("int") else {}
    xq = formats.roundtrip(x, act, granularity="channel", **opts)  # "channel" = one scale per row = per token
    wq = formats.roundtrip(w0, "fp8_e4m3", granularity="channel")
    assert torch.equal(net(x), F.linear(torch.from_numpy(xq), torch.from_numpy(wq), b))


def test_per_tensor_output_depends_on_the_batch_per_token_does_not():
    x = torch.randn(8, 64)
    loud = torch.cat([x, 100 * torch.randn(1, 64)])
    for gran, same in (("tensor", False), ("token", True)):
        net = _linear(2)
        quantize_(net, DynamicConfig(activations="int4", granularity=gran))
        assert torch.equal(net(x), net(loud)[:8]) == same


def test_block_formats_are_dynamic_by_construction():
    net = _linear(3)
    w0 = net[0].weight.detach().clone()
    quantize_(net, DynamicConfig(weights="q8_0", activations="mxfp8_e4m3"))
    x = torch.randn(4, 64)
    ref = F.linear(torch.from_numpy(formats.roundtrip(x, "mxfp8_e4m3")), torch.from_numpy(formats.roundtrip(w0, "q8_0")), net[0].bias)
    assert torch.equal(net(x), ref)


def test_digits_dynamic():
    m = load("digits-cnn", progress=False)
    xt, yt = load_split("test")
    float_acc = accuracy(m, xt, yt)
    acc = {}
    for gran in ("tensor", "token"):
        q = m.fresh()
        report = quantize_(q, DynamicConfig(weights="int8", activations="int8", granularity=gran), calibration=xt[:32])
        acc[gran] = accuracy(q, xt, yt)
        assert all(r.act_sqnr_db > 25 for r in report.layers)
    print(f"\ndigits-cnn float {float_acc:.4f}, dynamic W8A8 per tensor {acc['tensor']:.4f}, per token {acc['token']:.4f}")
    assert min(acc.values()) >= float_acc - 0.01


def test_bad_input():
    with pytest.raises(ValueError, match="quantizes activations at run time"):
        DynamicConfig(activations=None)
    with pytest.raises(ValueError, match="granularity must be one of"):
        DynamicConfig(granularity="channel")
    net = _linear(4)
    quantize_(net, DynamicConfig())
    with pytest.raises(ValueError, match="0: input activation has NaN/Inf"):
        net(torch.tensor([[float("nan")] * 64]))
    with pytest.raises(ValueError, match="already quantized"):
        quantize_(net, DynamicConfig())
    with pytest.raises(ValueError, match="weight rows of 64 values do not fit q4_k"):
        quantize_(_linear(5), DynamicConfig(weights="q4_k"))
    with pytest.raises(ValueError, match="no supported layer"):
        quantize_(nn.Sequential(nn.Tanh()), DynamicConfig())


@pytest.mark.slow
def test_minilm_dynamic_int8():
    from tests.models._offline import load_offline

    base = load_offline("minilm-l6")
    evaluation = wikitext_sentences(64)
    sims = {}
    for gran in ("tensor", "token"):
        m = base.fresh()
        quantize_(m, DynamicConfig(weights="int8", activations="int8", granularity=gran))
        sims[gran] = embedding_similarity(m, evaluation)
    print(f"\nMiniLM dynamic W8A8: per tensor {sims['tensor']}, per token {sims['token']}")
    assert sims["token"]["cosine_mean"] > 0.995
    assert sims["token"]["cosine_mean"] >= sims["tensor"]["cosine_mean"]
    assert np.isfinite(sims["tensor"]["cosine_mean"])
