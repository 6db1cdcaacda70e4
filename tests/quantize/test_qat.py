"""QAT: LSQ's forward and gradients against the paper's formulas, and on digits-cnn QAT at 4 and
2 bits recovers the accuracy PTQ at the same bits loses (with and without distillation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from qlab import formats
from qlab.eval import accuracy
from qlab.models import load
from qlab.models.digits import load_split
from qlab.quantize.api import quantize_
from qlab.quantize.configs import PTQConfig, QATConfig
from qlab.quantize.qat import LSQ, STEWeight
from qlab.quantize.recipes import Spec
from tests.quantize._fixtures import single_thread  # noqa: F401  (autouse fixture: one torch thread)


@pytest.fixture(scope="module")
def digits():
    x, y = load_split("train")
    xt, yt = load_split("test")
    m = load("digits-cnn", progress=False)
    return {"m": m, "x": x, "y": y, "xt": xt, "yt": yt, "float": accuracy(m, xt, yt)}


# -- LSQ against Esser et al. (2020) ---------------------------------------------------------------
def test_lsq_forward_and_gradients_follow_the_paper():
    qn, qp = 7, 7
    q = LSQ(qn, qp)
    with torch.no_grad():
        q.step.fill_(0.25)
        q.initialized.fill_(True)
    v = torch.tensor([-3.0, -1.1, -0.13, 0.0, 0.3, 0.62, 1.74, 2.5], requires_grad=True)
    out = q(v)
    # forward: qlab's int grid, exactly torch's fake quantization with scale s
    assert torch.equal(out, torch.fake_quantize_per_tensor_affine(v.detach(), 0.25, 0, -qn, qp))
    out.sum().backward()
    r = v.detach() / 0.25
    inside = (r > -qn) & (r < qp)
    # dv_hat/dv: straight through inside the range, 0 outside (eq. 5)
    assert torch.equal(v.grad, inside.float())
    # dv_hat/ds: -v/s + round(v/s) inside, -Qn / Qp outside (eq. 3), times g = 1/sqrt(N Qp)
    ds = torch.where(inside, torch.round(r) - r, torch.where(r <= -qn, torch.tensor(-qn * 1.0), torch.tensor(qp * 1.0)))
    assert q.step.grad.item() == pytest.approx(ds.sum().item() / math.sqrt(v.numel() * qp), rel=1e-5)


def test_lsq_init_is_two_mean_abs_over_sqrt_qp():
    w = torch.randn(6, 20)
    q = LSQ(1, 1, channels=6)  # int2: {-1, 0, 1}
    q.init_from(w)
    assert torch.allclose(q.step, 2 * w.abs().mean(1) / math.sqrt(1))
    levels = torch.unique(torch.round(q(w) / q.step.detach()[:, None]))
    assert set(levels.tolist()) <= {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("name,opts", [("int4", {}), ("int4", {"granularity": "tensor"}), ("nf4", {"block_size": 32}), ("mxfp4", {})])
def test_ste_weight_is_the_formats_roundtrip_with_identity_gradient(name, opts):
    w = torch.randn(8, 64, requires_grad=True)
    y = STEWeight(Spec(name, opts))(w)
    assert np.array_equal(y.detach().numpy(), formats.roundtrip(w.detach(), name, **opts))
    y.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


# -- digits-cnn: QAT recovers what PTQ loses -------------------------------------------------------
def _compare(d, bits):
    """PTQ vs QAT (LSQ, with and without distillation) at W{bits}A{bits}, per-tensor weight scales."""
    common = {"weights": f"int{bits}", "activations": f"int{bits}", "weight_granularity": "tensor"}
    m = d["m"].fresh()
    quantize_(m, PTQConfig(**common, progress=False), calibration=d["x"][:256])
    acc = {"ptq": accuracy(m, d["xt"], d["yt"])}
    for distill in (False, True):
        m = d["m"].fresh()
        report = quantize_(m, QATConfig(**common, distill=distill, epochs=3, progress=False), calibration=(d["x"], d["y"]))
        acc["qat+kd" if distill else "qat"] = accuracy(m, d["xt"], d["yt"])
        losses = report.extra["loss_per_epoch"]
        assert losses[-1] < losses[0]
        _check_converted(m, report, bits)
    print(f"\ndigits-cnn W{bits}A{bits} (per-tensor weights): float {d['float']:.4f}  PTQ {acc['ptq']:.4f}  "
          f"QAT-LSQ {acc['qat']:.4f}  QAT-LSQ+distillation {acc['qat+kd']:.4f}")  # fmt: skip
    return acc


def _check_converted(m, report, bits):
    """Converted weights sit on the int grid (one step per tensor), storage = qlab's int format."""
    qp = 2 ** (bits - 1) - 1
    for r in report.layers:
        w = getattr(m.model, r.name).weight.detach()
        levels = torch.unique(w)
        step = levels[levels > 0].min()
        k = w / step
        assert torch.allclose(k, torch.round(k), atol=1e-4) and k.abs().max() <= qp + 1e-4
        assert r.nbytes == formats.get(f"int{bits}").encode(w.reshape(w.shape[0], -1), granularity="tensor").nbytes
    assert not any(isinstance(mod, nn.Module) and "qlab_input_quantizer" in dict(mod.named_children()) for mod in m.model.modules())


def test_qat_4bit_recovers_ptq_loss(digits):
    acc = _compare(digits, 4)
    assert acc["ptq"] < digits["float"]
    for k in ("qat", "qat+kd"):
        assert acc[k] > acc["ptq"] and acc[k] >= digits["float"] - 0.01


def test_qat_2bit_recovers_ptq_loss(digits):
    acc = _compare(digits, 2)
    assert acc["ptq"] < 0.5  # ternary weights, 4-level activations: PTQ collapses
    for k in ("qat", "qat+kd"):
        assert acc[k] > 0.93


def test_distillation_without_labels_and_ste_with_any_format(digits):
    m = digits["m"].fresh()
    quantize_(m, QATConfig(weights="int4", activations="int8", distill=True, epochs=2, progress=False), calibration=digits["x"])
    acc_kd = accuracy(m, digits["xt"], digits["yt"])
    m = digits["m"].fresh()
    report = quantize_(m, QATConfig(weights="nf4", group_size=32, activations="fp8_e4m3", method="ste", exclude="conv1",
                                    epochs=2, progress=False), calibration=(digits["x"], digits["y"]))  # fmt: skip
    acc_ste = accuracy(m, digits["xt"], digits["yt"])
    w = m.model.fc1.weight.detach()
    assert np.array_equal(formats.roundtrip(w, "nf4", block_size=32), w.numpy())  # on the NF4 grid
    print(f"\nQAT distillation only (no labels) W4A8: {acc_kd:.4f}; STE nf4/fp8: {acc_ste:.4f}; {report.summary()}")
    assert acc_kd >= digits["float"] - 0.02 and acc_ste >= digits["float"] - 0.02


def test_digits_trains_on_its_own_split_by_default(digits):
    m = digits["m"].fresh()
    report = quantize_(m, QATConfig(weights="int8", activations=None, epochs=1, progress=False))
    assert len(report.extra["loss_per_epoch"]) == 1 and report.layers[0].activations == "f32"
    assert accuracy(m, digits["xt"], digits["yt"]) >= digits["float"] - 0.02


def test_qat_bad_input(digits):
    m = digits["m"].fresh()
    with pytest.raises(ValueError, match="no labels.*distill=True"):
        quantize_(m, QATConfig(epochs=1, progress=False), calibration=digits["x"][:64])
    assert not torch.nn.utils.parametrize.is_parametrized(m.model.fc1) and not m.model.fc1._forward_pre_hooks
    with pytest.raises(ValueError, match="symmetric weight grid"):
        QATConfig(weights="int1")
    with pytest.raises(ValueError, match="QAT needs training data"):
        quantize_(nn.Sequential(nn.Linear(4, 2)), QATConfig(progress=False))
    with pytest.raises(ValueError, match="needs method='ste'"):
        QATConfig(weights="q4_0")
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        QATConfig(epochs=0)
