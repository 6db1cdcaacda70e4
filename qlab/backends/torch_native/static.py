"""Static int8 with PyTorch's own kernels: eager-mode ``prepare`` / calibrate / ``convert`` on digits-cnn.

Eager-mode static quantization needs the model written for it: a ``QuantStub`` where float
tensors enter the int8 world, a ``DeQuantStub`` where they leave, ``nn.ReLU`` *modules* (not
``torch.relu`` calls) so that ``fuse_modules`` can merge conv+relu and linear+relu into one
int8 kernel (the ReLU becomes the clamp of the requantization, so no int8 tensor ever holds a
negative value it would then throw away). :class:`QuantizableDigitsCNN` is digits-cnn written
that way, with the trained weights copied in.

x86 engine defaults (``get_default_qconfig("x86")``): activations ``quint8`` with a
``HistogramObserver`` (L2-optimal clipping over a histogram; ``observer="minmax"`` uses the
plain min-max) and ``reduce_range=True`` (the scale is chosen for ``[0, 127]``: 7 bits of range,
so fbgemm's u8 x s8 pair sums cannot saturate int16); weights ``qint8`` per output channel,
symmetric, ``s = max|w| / 127.5`` (``per_channel=False``: one scale per tensor).

:func:`simulate_static` is the fake-quant reference: the float network evaluated in float32 with
every tensor the int8 model materializes passed through qlab's integer quantizer
(:func:`qlab.formats.integer.quantize` / ``dequantize``) with the scale and zero-point the
converted model chose. It agrees with the int8 kernels to within one code of the output scale at
the rare elements where float rounding of the requantization lands on the other side of a tie.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.model import Loaded
from ...formats.integer import dequantize, quantize
from ...models.digits import DigitsCNN
from ..model import BackendModel, saved_bytes, state_bytes
from ._engine import BACKEND, unsupported, x86_engine

STATIC_FORMATS = ("int8",)
OBSERVERS = ("histogram", "minmax")


class QuantizableDigitsCNN(nn.Module):
    """digits-cnn with quant/dequant stubs and ReLU modules (same weights, same float outputs)."""

    def __init__(self, src: DigitsCNN) -> None:
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv1, self.relu1 = copy.deepcopy(src.conv1), nn.ReLU()
        self.conv2, self.relu2 = copy.deepcopy(src.conv2), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc1, self.relu3 = copy.deepcopy(src.fc1), nn.ReLU()
        self.fc2 = copy.deepcopy(src.fc2)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.relu1(self.conv1(x))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(x.flatten(1)))
        return self.dequant(self.fc2(x))

    FUSE = (["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"])


def _qconfig(observer: str, per_channel: bool) -> Any:
    from torch.ao.quantization import (
        HistogramObserver,
        MinMaxObserver,
        PerChannelMinMaxObserver,
        QConfig,
    )

    act = {"histogram": HistogramObserver, "minmax": MinMaxObserver}[observer].with_args(
        dtype=torch.quint8, reduce_range=True
    )
    if per_channel:
        w = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    else:
        w = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return QConfig(activation=act, weight=w)


def _check_batches(calibration: Sequence[Any] | None) -> list[torch.Tensor]:
    if calibration is None or len(calibration) == 0:
        raise ValueError(f"{BACKEND}: static quantization needs calibration batches (got none)")
    out = []
    for b in calibration:
        b = torch.as_tensor(b, dtype=torch.float32)
        if not torch.isfinite(b).all():
            raise ValueError(f"{BACKEND}: a calibration batch contains NaN or Inf")
        out.append(b)
    return out


def quantize_static(
    m: Loaded,
    calibration: Sequence[Any] | None,
    weights: str = "int8",
    activations: str = "int8",
    observer: str = "histogram",
    per_channel: bool = True,
) -> BackendModel:
    """digits-cnn converted to torch.ao's int8 modules after calibrating on ``calibration``
    (a list of image batches ``(n, 1, 8, 8)``, e.g. ``qlab.backends.compare.batches(m)``)."""
    if weights not in STATIC_FORMATS or activations not in STATIC_FORMATS:
        bad = weights if weights not in STATIC_FORMATS else activations
        raise unsupported(bad, "static", STATIC_FORMATS)
    if observer not in OBSERVERS:
        raise ValueError(f"{BACKEND}: observer must be one of {OBSERVERS}, got {observer!r}")
    if not isinstance(m.model, DigitsCNN):
        raise ValueError(
            f"{BACKEND}: eager-mode static int8 is written for digits-cnn (QuantStub/DeQuantStub placed "
            f"by hand); {m.name} is a {type(m.model).__name__}. Use quantize_dynamic for Linear-only models."
        )
    batches = _check_batches(calibration)
    model = QuantizableDigitsCNN(m.model).eval()
    with x86_engine():
        model.qconfig = _qconfig(observer, per_channel)
        torch.ao.quantization.fuse_modules(model, [list(p) for p in model.FUSE], inplace=True)
        torch.ao.quantization.prepare(model, inplace=True)
        with torch.inference_mode():
            for b in batches:
                model(b)
        torch.ao.quantization.convert(model, inplace=True)
    loaded = dataclasses.replace(m, model=model)
    scheme = f"static W8A8 ({observer}, weights per {'channel' if per_channel else 'tensor'})"
    return BackendModel(BACKEND, scheme, loaded, state_bytes(model), saved_bytes(model),
                        info={"observer": observer, "per_channel": per_channel, "batches": len(batches)})


def _fq(x: torch.Tensor, scale: float, zp: int) -> torch.Tensor:
    """quint8 fake quantization with qlab's integer quantizer (one scale for the tensor)."""
    g = x.detach().numpy().reshape(1, -1)
    s, z = np.array([scale], np.float32), np.array([zp], np.int32)
    return torch.from_numpy(dequantize(quantize(g, s, z, 0, 255), s, z).reshape(x.shape))


def _fq_weight(mod: Any, w: torch.Tensor) -> torch.Tensor:
    """The float weight quantized by qlab with the converted module's own weight scales."""
    qw = mod.weight()
    if qw.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        s = qw.q_per_channel_scales().numpy().astype(np.float32)
        z = qw.q_per_channel_zero_points().numpy().astype(np.int32)
    else:
        s, z = np.array([qw.q_scale()], np.float32), np.array([qw.q_zero_point()], np.int32)
    g = w.detach().numpy().reshape(s.size, -1)
    return torch.from_numpy(dequantize(quantize(g, s, z, -128, 127), s, z).reshape(w.shape))


@torch.inference_mode()
def simulate_static(float_model: DigitsCNN, qmodel: QuantizableDigitsCNN, x: torch.Tensor) -> torch.Tensor:
    """Logits of the fake-quant reference of a converted :class:`QuantizableDigitsCNN`.

    Every int8 tensor of the real model (input, each fused layer's output, the logits) is
    simulated with the converted model's scale/zero-point; weights are re-quantized from the
    float model with the converted model's per-channel scales; arithmetic is float32.
    """
    f, q = float_model, qmodel
    h = _fq(x, float(q.quant.scale), int(q.quant.zero_point))
    for layer, fmod in (("conv1", f.conv1), ("conv2", f.conv2)):
        qm = getattr(q, layer)
        h = torch.relu(nn.functional.conv2d(h, _fq_weight(qm, fmod.weight), fmod.bias, padding=1))
        h = _fq(h, qm.scale, qm.zero_point)
    h = nn.functional.max_pool2d(h, 2).flatten(1)  # max of codes: exact, no requantization
    h = torch.relu(nn.functional.linear(h, _fq_weight(q.fc1, f.fc1.weight), f.fc1.bias))
    h = _fq(h, q.fc1.scale, q.fc1.zero_point)
    out = nn.functional.linear(h, _fq_weight(q.fc2, f.fc2.weight), f.fc2.bias)
    return _fq(out, q.fc2.scale, q.fc2.zero_point)


__all__ = ["OBSERVERS", "STATIC_FORMATS", "QuantizableDigitsCNN", "quantize_static", "simulate_static"]
