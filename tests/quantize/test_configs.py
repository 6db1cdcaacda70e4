"""Config dataclasses (validated on creation) and the quantize_ registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from qlab import formats
from qlab.quantize.api import methods, quantize_, register_method
from qlab.quantize.configs import (
    AWQConfig,
    DynamicConfig,
    GPTQConfig,
    LLMInt8Config,
    PTQConfig,
    QATConfig,
    QuantConfig,
    SmoothQuantConfig,
)
from qlab.quantize.recipes import Spec


def test_weight_spec_maps_config_onto_format_options():
    assert PTQConfig(weights="int4").weight_spec() == Spec("int4") and PTQConfig(weights="int4").weight_spec().options == {}
    s = PTQConfig(weights="int4", group_size=32).weight_spec()
    assert s.options == {"granularity": "group", "group_size": 32}
    assert PTQConfig(weights="fp8_e4m3").weight_spec().options == {"granularity": "channel"}  # per output channel
    assert PTQConfig(weights="int8", weight_granularity="tensor").weight_spec().options == {"granularity": "tensor"}
    assert PTQConfig(weights="nf4", group_size=128).weight_spec().options == {"block_size": 128}
    assert PTQConfig(weights="q4_k").weight_spec().options == {}
    assert PTQConfig(weights="fp16").weight_spec().options == {}  # a plain cast stays a plain cast
    assert PTQConfig(weights="Q4_0").weights == "q4_0"
    # every spec is a valid qlab.formats encoding
    x = torch.randn(4, 256)
    for cfg in (PTQConfig(weights="int4", group_size=64), PTQConfig(weights="nf4", group_size=64), PTQConfig(weights="q4_k")):
        s = cfg.weight_spec()
        formats.get(s).encode(x, **s.options)


def test_activation_spec_defaults_to_asymmetric_integers():
    assert PTQConfig().activation_spec().options == {"symmetric": False}
    assert PTQConfig(activation_options={"symmetric": True}).activation_spec().options == {"symmetric": True}
    assert PTQConfig(activations="fp8_e4m3").activation_spec().options == {}


@pytest.mark.parametrize("kw,match", [
    ({"weights": "int9"}, "weights: unknown format 'int9'; valid formats: int1"),
    ({"activations": "fp9"}, "activations: unknown format 'fp9'"),
    ({"observer": "kmeans"}, "unknown observer 'kmeans'; valid observers: minmax"),
    ({"observer": "percentile", "observer_options": {"percentile": 0}}, "percentile must be in"),
    ({"weights": None, "activations": None}, "nothing to quantize"),
    ({"weights": "q4_k", "group_size": 32}, "q4_k has fixed blocks of 256 values; group_size=32"),
    ({"weights": "int4", "group_size": 12}, "group_size must be a positive multiple of 8"),
    ({"group_size": 0}, "group_size must be a positive int"),
    ({"weight_options": {"bogus": 1}}, r"unknown option\(s\) \['bogus'\]"),
    ({"weight_granularity": "row"}, "weight_granularity must be one of"),
    ({"weight_granularity": "tensor", "group_size": 32}, "contradictory"),
    ({"weights": "q4_0", "weight_granularity": "tensor"}, "no scale granularity option"),
    ({"activation_granularity": "token"}, "activation_granularity must be one of"),
    ({"activations": "mxfp4", "observer": "mse"}, "mxfp4 has none"),
    ({"activations": "fp8_e4m3", "observer": "entropy"}, "num_quantized_bins"),
    ({"activations": None, "activation_options": {"symmetric": True}}, "activations=None"),
    ({"include": 3}, "include must be a pattern"),
])  # fmt: skip
def test_ptq_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        PTQConfig(**kw)


def test_other_configs_validate():
    assert QATConfig().method == "lsq" and QATConfig(method="ste", weights="mxfp4").weights == "mxfp4"
    for cfg, match in [
        (lambda: QATConfig(method="adam"), "method must be one of"),
        (lambda: QATConfig(weights="int4", weight_options={"symmetric": False}), "symmetric weight grid"),
        (lambda: QATConfig(distill_weight=2), "distill_weight"),
        (lambda: QATConfig(weights=None), "needs a weights format"),
        (lambda: DynamicConfig(activations=None), "run time"),
        (lambda: LLMInt8Config(threshold=-1), "threshold must be a positive"),
        (lambda: SmoothQuantConfig(alpha=1.5), r"alpha must be in \[0, 1\]"),
        (lambda: SmoothQuantConfig(observer="nope"), "unknown observer"),
        (lambda: AWQConfig(n_grid=0), "n_grid"),
        (lambda: GPTQConfig(act_order="yes"), "act_order must be True or False"),
        (lambda: GPTQConfig(weights="q4_k"), "fixed blocks of 256"),  # default group_size=32
    ]:
        with pytest.raises(ValueError, match=match):
            cfg()
    assert LLMInt8Config().threshold == 6.0 and SmoothQuantConfig().alpha == 0.5
    assert AWQConfig().weight_spec().options == {"granularity": "group", "group_size": 32}
    assert GPTQConfig(group_size=None).weight_spec().options == {}  # per channel (int4's default)


def test_configs_are_frozen_dataclasses_with_labels():
    cfg = PTQConfig(weights="int4", group_size=32, activations=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.weights = "int8"
    assert dataclasses.replace(cfg, group_size=64).weight_spec().options["group_size"] == 64
    assert cfg.label() == "PTQ int4(granularity='group', group_size=32)/float"
    assert PTQConfig(observer="kl").observer == "entropy"
    d = PTQConfig().to_dict()
    assert d["method"] == "PTQConfig" and d["observer"] == "minmax" and d["weight_options"] == {}


# -- the registry -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _HalfConfig(QuantConfig):
    """A toy method: halve every Linear weight."""

    weights: str | None = "int8"


@dataclasses.dataclass(frozen=True)
class _Missing(QuantConfig):
    method_module = "qlab.quantize._no_such_method"


def test_register_method_dispatches_on_the_config_type():
    def halve(model, config, calibration, factor=0.5):
        mod = model if isinstance(model, nn.Module) else model.model
        with torch.no_grad():
            for m in mod.modules():
                if isinstance(m, nn.Linear):
                    m.weight.mul_(factor)
        return ("halved", calibration)

    register_method(_HalfConfig, halve)
    net = nn.Linear(3, 3)
    w = net.weight.detach().clone()
    assert quantize_(net, _HalfConfig(), calibration="cal") == ("halved", "cal")
    assert torch.equal(net.weight, w * 0.5)
    quantize_(net, _HalfConfig(), factor=2.0)  # extra keyword arguments reach the method
    assert torch.equal(net.weight, w)
    assert methods()["_HalfConfig"].endswith("halve")

    @dataclasses.dataclass(frozen=True)
    class _Sub(_HalfConfig):
        pass

    assert quantize_(net, _Sub())[0] == "halved"  # subclasses inherit their parent's method


def test_builtin_methods_import_on_first_use_and_unknown_ones_fail():
    quantize_(nn.Sequential(nn.Linear(8, 8)), PTQConfig(activations=None))
    assert methods()["PTQConfig"] == "qlab.quantize.ptq.quantize_ptq"
    with pytest.raises(ValueError, match="_Missing is implemented in qlab.quantize._no_such_method, which is not available"):
        quantize_(nn.Linear(2, 2), _Missing())
    with pytest.raises(TypeError, match="config must be a qlab config"):
        quantize_(nn.Linear(2, 2), {"weights": "int8"})
    with pytest.raises(TypeError, match="model must be a qlab.models.load"):
        quantize_("smollm2", PTQConfig(activations=None))
    with pytest.raises(TypeError, match="expects a config class"):
        register_method(PTQConfig(), lambda *a: None)


def test_weight_only_accepts_a_bare_module_and_reports_bytes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    w0 = net[0].weight.detach().clone()
    report = quantize_(net, PTQConfig(weights="int4", activations=None, group_size=32))
    enc = formats.get("int4").encode(w0, granularity="group", group_size=32)
    assert torch.equal(net[0].weight, torch.from_numpy(formats.get("int4").decode(enc)))
    assert report.layers[0].nbytes == enc.nbytes and report.layers[0].activations == "f32"
    assert report.other_params == 32 + 4 and report.total_bytes == sum(r.nbytes for r in report.layers) + 4 * 36
    assert "int4" in report.table() and report.to_dict()["layers"][0]["name"] == "0"
