"""Static PTQ: fake quantization bit-exact with qlab.formats, accuracy on digits-cnn and MiniLM,
the effect of calibration data, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from qlab import formats
from qlab.eval import accuracy, embedding_similarity, wikitext_sentences
from qlab.models import load
from qlab.models.digits import load_split
from qlab.quantize import ptq
from qlab.quantize.api import quantize_
from qlab.quantize.calibration import calibration_study, digits_calibration_sets
from qlab.quantize.configs import PTQConfig, activation_spec, weight_spec
from qlab.quantize.fakequant import RangeQuantizer, RoundtripQuantizer
from tests.quantize._fixtures import single_thread  # noqa: F401  (autouse fixture: one torch thread)


@pytest.fixture(scope="module")
def digits():
    x, y = load_split("train")
    xt, yt = load_split("test")
    return {"m": load("digits-cnn", progress=False), "x": x, "y": y, "xt": xt, "yt": yt}


def _acc(m, d):
    return accuracy(m, d["xt"], d["yt"])


def _ptq(d, n=256, **kw):
    m = d["m"].fresh()
    report = quantize_(m, PTQConfig(progress=False, **kw), calibration=d["x"][:n])
    return m, report


# -- the fake quantizers are qlab.formats -----------------------------------------------------------
@pytest.mark.parametrize("name,opts", [
    ("int8", {"symmetric": True}), ("int8", {"symmetric": False}), ("int4", {"symmetric": False}),
    ("fp8_e4m3", {}), ("fp8_e5m2", {}), ("fp4_e2m1", {}), ("fp6_e3m2", {}),
])  # fmt: skip
def test_range_quantizer_equals_format_roundtrip(name, opts):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 40, generator=g) * 3 + 0.5
    spec = activation_spec(name, opts)
    q = RangeQuantizer(spec, x.min().item(), x.max().item())(x)
    assert np.array_equal(q.numpy(), formats.roundtrip(x, name, granularity="tensor", **opts))
    lo, hi = torch.aminmax(x, dim=1)  # per channel = per row of the last axis (axis 0 holds the channels)
    q = RangeQuantizer(spec, lo.numpy(), hi.numpy(), axis=0)(x)
    assert np.array_equal(q.numpy(), formats.roundtrip(x, name, granularity="channel", **opts))


def test_roundtrip_quantizer_runs_along_the_channel_axis():
    x = torch.randn(2, 64, 3, 3)
    y = RoundtripQuantizer(activation_spec("mxfp4", {}), axis=1)(x)
    ref = formats.roundtrip(x.movedim(1, -1).contiguous(), "mxfp4")
    assert np.array_equal(y.movedim(1, -1).numpy(), ref)


# -- digits-cnn ---------------------------------------------------------------------------------------
def test_w8a8_weights_activations_and_report_are_exact(digits):
    m, report = _ptq(digits, weights="int8", activations="int8", observer="minmax")
    ref = digits["m"].model
    spec = weight_spec("int8", None, None, {})
    for la in report.layers:
        w0 = getattr(ref, la.name).weight.detach()
        enc = formats.get("int8").encode(w0.reshape(w0.shape[0], -1))
        assert np.array_equal(getattr(m.model, la.name).weight.detach().numpy().ravel(), formats.get("int8").decode(enc).ravel())
        assert la.nbytes == enc.nbytes and la.weights == spec.label() == "int8"
        assert 35 < la.sqnr_db < 60 and la.act_sqnr_db is not None and la.act_sqnr_db > 25
    # fc2's input is quantized with the observed range, exactly as RangeQuantizer / torch does it
    seen = {}
    m.model.fc2.register_forward_pre_hook(lambda mod, args: seen.update(raw=args[0]), prepend=True)
    m.model.fc2.register_forward_hook(lambda mod, args, out: seen.update(x=args[0], out=out))
    m.model(digits["xt"][:16])
    r = report.layer("fc2")
    q = RangeQuantizer(activation_spec("int8", {}), r.act_lo, r.act_hi)
    assert r.act_lo == 0.0  # post-ReLU: the asymmetric grid starts at 0
    assert torch.equal(seen["x"], q(seen["raw"])) and not torch.equal(seen["x"], seen["raw"])
    w = m.model.fc2.weight
    assert torch.equal(seen["out"], torch.nn.functional.linear(seen["x"], w, m.model.fc2.bias))
    assert report.total_bytes < 0.3 * report.fp32_bytes
    acc = _acc(m, digits)
    print(f"\ndigits-cnn float {_acc(digits['m'], digits):.4f}  PTQ W8A8 minmax {acc:.4f}\n{report.table()}")
    assert acc >= _acc(digits["m"], digits) - 0.01


def test_observers_and_bit_widths_table(digits):
    """Accuracy per observer at W8A8 / W4A8 / W2A8: 8 and 4 bits keep it, 2 bits (ternary) lose it."""
    float_acc = _acc(digits["m"], digits)
    lines, acc = [], {}
    for obs in ("minmax", "moving_average", "percentile", "mse", "entropy"):
        for w in ("int8", "int4", "int2"):
            m, _ = _ptq(digits, 64, weights=w, activations="int8", observer=obs)
            acc[obs, w] = _acc(m, digits)
        lines.append(f"{obs:15s} " + "  ".join(f"{acc[obs, w]:.4f}" for w in ("int8", "int4", "int2")))
    print(f"\nfloat {float_acc:.4f}\nobserver        W8A8    W4A8    W2A8\n" + "\n".join(lines))
    for obs in ("minmax", "moving_average", "percentile", "mse", "entropy"):
        assert acc[obs, "int8"] >= float_acc - 0.01
        assert acc[obs, "int4"] >= float_acc - 0.02
        assert acc[obs, "int2"] < 0.6


@pytest.mark.parametrize("kw", [
    {"weights": "int4", "activations": None, "group_size": 32, "exclude": "conv1"},          # W4A16
    {"weights": "fp8_e4m3", "activations": "fp8_e4m3"},                                   # FP8 W8A8
    {"weights": "mxfp4", "activations": "mxfp8_e4m3", "exclude": ["conv1"]},             # MX
    {"weights": "nf4", "activations": "int8", "group_size": 32, "exclude": "conv1", "observer": "percentile"},
    {"weights": None, "activations": "int8", "activation_granularity": "channel"},        # A8 only
])  # fmt: skip
def test_one_line_schemes(digits, kw):
    m, report = _ptq(digits, **kw)
    acc = _acc(m, digits)
    print(f"\n{report.summary()}: accuracy {acc:.4f}")
    assert acc >= _acc(digits["m"], digits) - 0.02
    assert [r.name for r in report.layers] == [n for n in ("conv1", "conv2", "fc1", "fc2") if n not in str(kw.get("exclude"))]


def test_w4a16_as_a_cast_needs_no_calibration(digits):
    m = digits["m"].fresh()
    report = quantize_(m, PTQConfig(weights="int4", activations="bf16", progress=False))
    seen = {}
    m.model.fc1.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]), prepend=True)  # before qlab's
    m.model.fc1.register_forward_hook(lambda mod, args, out: seen.update(q=args[0]))
    m.model(digits["xt"][:8])
    assert torch.equal(seen["q"], torch.from_numpy(formats.roundtrip(seen["x"], "bf16")))
    assert not torch.equal(seen["q"], seen["x"])
    assert report.layer("fc1").observer == "" and report.layer("fc1").activations == "bf16"
    assert _acc(m, digits) >= _acc(digits["m"], digits) - 0.02


def test_fp8_weights_are_the_formats_channel_encoding(digits):
    m, report = _ptq(digits, weights="fp8_e4m3", activations="fp8_e4m3")
    w0 = digits["m"].model.fc1.weight.detach()
    assert np.array_equal(m.model.fc1.weight.detach().numpy(), formats.roundtrip(w0, "fp8_e4m3", granularity="channel"))
    assert report.layer("fc1").nbytes == 32 * 512 + 4 * 32


def test_step_by_step_session(digits):
    m = digits["m"].fresh()
    s = ptq.prepare(m, PTQConfig(observer="percentile", observer_options={"percentile": 99.0}, progress=False))
    with pytest.raises(ValueError, match="before any calibration batch"):
        s.convert()
    s.calibrate(digits["x"][:64])
    s.calibrate([digits["x"][64:96]])
    assert s.n_batches == 3 and s.observers["fc1"].n_batches == 3
    lo, hi = s.observers["fc1"].range()
    report = s.convert()
    assert report.layer("fc1").act_hi == pytest.approx(float(hi)) and report.extra["calibration_batches"] == 3


# -- the effect of calibration data --------------------------------------------------------------
def test_calibration_set_size_matters_with_per_channel_ranges(digits):
    """One image leaves many channels silent (range [0, 0]); other images are then clipped."""
    rows = calibration_study(
        digits["m"], PTQConfig(weights="int8", activations="int8", activation_granularity="channel"),
        {"train": digits_calibration_sets(256)["train"]}, sizes=(1, 4, 32, 256),
        evaluate=lambda m: {"accuracy": _acc(m, digits)},
    )  # fmt: skip
    acc = {r["size"]: r["accuracy"] for r in rows}
    print("\ncalibration images -> accuracy (W8A8, per-channel activations):", acc)
    assert acc[1] < acc[256] - 0.2
    assert acc[1] <= acc[4] <= acc[32] + 0.005 and acc[256] >= acc[0] - 0.01


def test_unrepresentative_calibration_data_hurts(digits):
    sets = digits_calibration_sets(256)
    rows = calibration_study(
        digits["m"], PTQConfig(weights="int8", activations="int8"), sets, sizes=(8, 256),
        evaluate=lambda m: {"accuracy": _acc(m, digits)},
    )  # fmt: skip
    acc = {(r["data"], r["size"]): r["accuracy"] for r in rows}
    print("\ncalibration data -> accuracy (W8A8 per-tensor):", acc)
    assert acc["train", 256] >= acc["float", 0] - 0.01
    assert acc["dim", 256] < acc["train", 256] - 0.05  # ranges 4x too small: activations clipped
    assert set(sets) == {"train", "inverted", "noise", "dim"}


# -- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("calibration", [None, [], torch.zeros(0, 1, 8, 8), [torch.zeros(0, 1, 8, 8)], ""])
def test_calibrating_with_no_batches(digits, calibration):
    m = digits["m"].fresh()
    with pytest.raises(ValueError, match="no batches"):
        quantize_(m, PTQConfig(progress=False), calibration=calibration)
    assert not hasattr(m.model, "_qlab_quantized") and not m.model.conv1._forward_pre_hooks


def test_nan_activations_name_the_layer(digits):
    m = digits["m"].fresh()
    x = digits["x"][:32].clone()
    x[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"conv1: batch 0 has \d+ NaN/Inf"):
        quantize_(m, PTQConfig(progress=False), calibration=x)
    assert torch.equal(m.model.fc1.weight, digits["m"].model.fc1.weight)  # untouched
    assert not m.model.conv1._forward_pre_hooks
    quantize_(m, PTQConfig(progress=False), calibration=digits["x"][:32])  # the same copy still works
    with pytest.raises(ValueError, match="conv1: input activation has NaN"):
        m.model(x)


def test_model_without_supported_layers():
    with pytest.raises(ValueError, match="no supported layer.*Linear, Conv1d, Conv2d.*ReLU"):
        quantize_(nn.Sequential(nn.ReLU(), nn.Flatten()), PTQConfig(), calibration=torch.ones(2, 3))


def test_weight_rows_that_do_not_fit_the_format(digits):
    m = digits["m"].fresh()
    with pytest.raises(ValueError, match=r"conv1 \(Conv2d 32x1x3x3\): weight rows of 9 values do not fit q4_0 \(blocks of 32\).*exclude"):
        quantize_(m, PTQConfig(weights="q4_0", progress=False), calibration=digits["x"][:32])
    with pytest.raises(ValueError, match="conv1: its input has 1 features per row.*mxfp8_e4m3"):
        quantize_(m, PTQConfig(weights="int8", activations="mxfp8_e4m3", progress=False), calibration=digits["x"][:32])
    assert torch.equal(m.model.conv2.weight, digits["m"].model.conv2.weight)


def test_quantizing_twice_and_unreached_layers(digits):
    m, _ = _ptq(digits)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_(m, PTQConfig(progress=False), calibration=digits["x"][:32])

    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.a(x)

    with pytest.raises(ValueError, match="b never ran during calibration"):
        quantize_(Skip(), PTQConfig(progress=False), calibration=torch.ones(3, 4))
    report = quantize_(Skip(), PTQConfig(progress=False, exclude="b"), calibration=torch.ones(3, 4))
    assert [r.name for r in report.layers] == ["a"]


# -- MiniLM (a transformer, text calibration) -----------------------------------------------------------
@pytest.mark.slow
def test_minilm_w8a8_with_text_calibration():
    from tests.models._offline import load_offline

    base = load_offline("minilm-l6")
    sentences = wikitext_sentences(1100)
    evaluation, calibration = sentences[:64], sentences[1000:1032]  # calibrate on other text
    m = base.fresh()
    report = quantize_(m, PTQConfig(weights="int8", activations="int8", progress=False), calibration=calibration)
    assert len(report.layers) == 37  # 6 x (q, k, v, o, up, down) + pooler
    assert all(r.act_sqnr_db is not None for r in report.layers[:36])
    sim = embedding_similarity(m, evaluation)
    print(f"\nMiniLM PTQ W8A8 minmax: {sim}\n{report.table(max_rows=6)}")
    assert sim["cosine_mean"] > 0.98


# -- issue 11: calibration checked against the model before any hook ---------------------------------------
@pytest.mark.parametrize(
    "calibration, match",
    [
        (torch.zeros(4, 8, 8), r"calibration batch 0: a torch.float32 tensor of shape \(4, 8, 8\) does not fit"),
        (torch.zeros(4, 3, 8, 8), r"shape \(4, 3, 8, 8\) does not fit .*Conv2d expecting float inputs of shape "
                                  r"\(batch, 1, H, W\)"),
        ([torch.zeros(4, 1, 8, 8, dtype=torch.int64)], r"calibration batch 0: a torch.int64 tensor"),
    ],
)
def test_calibration_of_the_wrong_shape_or_dtype(digits, calibration, match):
    m = digits["m"].fresh()
    with pytest.raises(ValueError, match=match):
        quantize_(m, PTQConfig(progress=False), calibration=calibration)
    assert not hasattr(m.model, "_qlab_quantized") and not m.model.conv1._forward_pre_hooks
