"""Dynamic int8 with PyTorch's own kernels: ``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear``.

What the runtime does (x86 engine = fbgemm), and what :func:`simulate_dynamic` reproduces with
qlab's integer formats:

* **weights**, ahead of time: int8 codes in ``[-128, 127]`` with the symmetric min-max observer,
  ``s = max|w| / 127.5`` (``MinMaxObserver(qint8, per_tensor_symmetric)``; per output channel
  with ``per_channel=True``), ``q = nearbyint(w / s)``. Note the *full* signed range, unlike
  qlab's ``int8`` (``[-127, 127]``, ``s = max|w| / 127``): the simulation therefore calls
  :func:`qlab.formats.integer.quantize` with torch's scale rule.
* **activations**, per call: the whole input tensor (all tokens of the batch, padding included)
  gets one asymmetric uint8 scale/zero-point from its min and max -- with ``reduce_range``: fbgemm
  multiplies u8 x s8 pairs with ``vpmaddubsw`` whose int16 sums can saturate, so on x86 the
  activation range is cut to **7 bits** (``[0, 127]``). That is exactly qlab's ``int7``
  with ``symmetric=False, granularity="tensor"``.
* the int32 accumulator is rescaled by ``s_x * s_w`` in float32 and the float bias added.

So a quantized ``Linear`` and its qlab simulation agree to float32 rounding (a few ulp of the
output) -- apart from rare exact ties in the activation rounding, which move one code by one.
``fp16`` weight-only dynamic quantization (``float16_dynamic_qconfig``) is supported too: weights
stored as float16, computation in float32.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.fakequant import FakeQuantLinear, linear_names, replace_linears
from ...core.model import Loaded
from ...formats import roundtrip
from ...formats.integer import dequantize, quantize
from ..model import BackendModel, saved_bytes, state_bytes
from ._engine import BACKEND, unsupported, x86_engine

DYNAMIC_FORMATS = ("int8", "fp16")
ACTIVATION_BITS = 7  # x86/fbgemm reduce_range: activations use [0, 127]


def _linears(model: nn.Module, name: str) -> list[str]:
    names = linear_names(model)
    if not names:
        raise ValueError(f"{BACKEND}: {name} has no nn.Linear layers; dynamic quantization has nothing to quantize")
    return names


def quantize_dynamic(m: Loaded, weights: str = "int8", per_channel: bool = False) -> BackendModel:
    """A copy of ``m`` whose ``nn.Linear`` layers run torch.ao's dynamic quantized kernels.

    ``weights``: ``"int8"`` (W8A8: int8 weights, activations quantized per call) or ``"fp16"``
    (float16 weights, float activations). ``per_channel``: one weight scale per output channel.
    """
    if weights not in DYNAMIC_FORMATS:
        raise unsupported(weights, "dynamic", DYNAMIC_FORMATS)
    if per_channel and weights != "int8":
        raise ValueError(f"{BACKEND}: per_channel applies to int8 weights only, not {weights!r}")
    layers = _linears(m.model, m.name)
    from torch.ao.quantization import (
        default_dynamic_qconfig,
        float16_dynamic_qconfig,
        per_channel_dynamic_qconfig,
    )

    if weights == "fp16":
        qconfig = float16_dynamic_qconfig
    else:
        qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    model = copy.deepcopy(m.model).eval()
    with x86_engine():
        q = torch.ao.quantization.quantize_dynamic(model, {nn.Linear: qconfig}, inplace=True)
    scheme = (
        f"dynamic W8A8 (int8 weights per {'channel' if per_channel else 'tensor'}, "
        f"uint{ACTIVATION_BITS} activations per tensor)"
        if weights == "int8" else "dynamic fp16 weights"
    )
    loaded = dataclasses.replace(m, model=q)
    return BackendModel(BACKEND, scheme, loaded, state_bytes(q), saved_bytes(q),
                        info={"layers": layers, "weights": weights, "per_channel": per_channel})


def torch_weight_qparams(w: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """torch's symmetric qint8 min-max scales, ``max|w| / 127.5`` in float32 (one per tensor or row),
    floored at float32 eps as ``MinMaxObserver`` does, and the groups they apply to."""
    g = w.reshape(w.shape[0] if per_channel else 1, -1)
    amax = np.abs(g).max(axis=1).astype(np.float32)
    scale = np.maximum(amax / np.float32(127.5), np.finfo(np.float32).eps).astype(np.float32)
    return g, scale


def simulate_weight(w: np.ndarray, per_channel: bool) -> np.ndarray:
    """The weight torch.ao's dynamic ``Linear`` holds, computed by qlab's integer quantizer."""
    g, scale = torch_weight_qparams(w, per_channel)
    zp = np.zeros(scale.size, np.int32)
    return dequantize(quantize(g, scale, zp, -128, 127), scale, zp).reshape(w.shape)


class SimulatedDynamicLinear(FakeQuantLinear):
    """``nn.Linear`` with fake-quantized weights and per-call fake-quantized activations
    (``uint7`` per tensor, fbgemm's ``reduce_range``) for int8; float inputs for fp16 weights."""

    def __init__(self, lin: nn.Linear, weights: str, per_channel: bool) -> None:
        w = lin.weight.detach().float().numpy()
        w_hat = simulate_weight(w, per_channel) if weights == "int8" else roundtrip(w, "fp16")
        act = f"int{ACTIVATION_BITS}" if weights == "int8" else None
        super().__init__(lin, w_hat, act, {"symmetric": False, "granularity": "tensor"})


def simulate_dynamic(m: Loaded, weights: str = "int8", per_channel: bool = False) -> Any:
    """qlab's simulation of :func:`quantize_dynamic`: a float copy of ``m`` (a ``LoadedModel``)
    with every ``nn.Linear`` replaced by :class:`SimulatedDynamicLinear`."""
    if weights not in DYNAMIC_FORMATS:
        raise unsupported(weights, "dynamic", DYNAMIC_FORMATS)
    _linears(m.model, m.name)
    return replace_linears(m, lambda lin: SimulatedDynamicLinear(lin, weights, per_channel))


__all__ = ["ACTIVATION_BITS", "DYNAMIC_FORMATS", "SimulatedDynamicLinear", "quantize_dynamic", "simulate_dynamic",
           "simulate_weight", "torch_weight_qparams"]
