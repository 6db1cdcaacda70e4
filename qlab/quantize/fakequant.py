"""Fake quantization of torch tensors with any format of :mod:`qlab.formats`.

Two ways a tensor meets a format:

* **ranged** -- formats with one scale per tensor or channel (``int*`` and the scaled minifloats
  ``fp8_*``, ``fp6_*``, ``fp4_e2m1``): the scale comes from a *given* range ``[lo, hi]`` (an
  observer's, or the batch's own for dynamic quantization), not from the tensor. The scale rule
  is the format's own, applied to the range: ``integer.qparams`` (``amax / qmax``, or
  ``(hi - lo) / (qmax - qmin)`` with a zero-point) and ``minifloat.absmax_scales``
  (``amax / fmt.max``). With ``[lo, hi]`` = the tensor's min/max the result is bit-identical to
  ``qlab.formats.roundtrip(x, fmt, granularity="tensor"/"channel")`` (tested): integers go through
  ``torch.fake_quantize_per_{tensor,channel}_affine``, which compute ``nearbyint(x * (1/s))`` in
  float32 exactly as :mod:`qlab.formats.integer` does; minifloats divide by the scale and round
  with the format's own ``cast`` (saturating), as :class:`qlab.formats.minifloat.Minifloat`.
* **roundtrip** -- formats that carry their own scales per block (MX, NVFP4, NF4, GGML types, and
  ``int*``/``fp*`` with ``granularity="group"``): each tensor is encoded and decoded by the format
  along the channel axis (moved last). A given range only clips.
* **cast** -- unscaled floats (``fp16``, ``bf16``, and the minifloats with ``granularity="none"``):
  a plain rounding cast, no range at all (W4A16 with ``activations="bf16"`` needs no calibration).

Gradients: the straight-through estimator. Integers use torch's kernels (gradient 1 inside the
range, 0 for clipped values); the other formats pass the gradient through unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import formats
from ..formats import integer
from ..formats.minifloat import Minifloat, absmax_scales
from .recipes import Spec


def kind(spec: Spec) -> str:
    """``"ranged"``, ``"roundtrip"`` or ``"cast"`` (see the module docstring)."""
    fmt = formats.get(spec)
    gran = {**fmt.defaults, **spec.options}.get("granularity")
    if fmt.family == "integer" and gran != "group":
        return "ranged"
    if isinstance(fmt, Minifloat) and gran in ("tensor", "channel"):
        return "ranged"
    if isinstance(fmt, Minifloat) and gran == "none":
        return "cast"
    return "roundtrip"


def is_integer(spec: Spec) -> bool:
    return formats.get(spec).family == "integer"


def int_grid(spec: Spec) -> tuple[int, int, bool]:
    """``(qmin, qmax, symmetric)`` of an integer format with its options."""
    fmt = formats.get(spec)
    sym = fmt.options(**spec.options)["symmetric"]
    qmin, qmax = integer.qrange(fmt.bits, sym)
    return qmin, qmax, sym


class _STE(torch.autograd.Function):
    """Forward: the quantized value computed outside autograd; backward: identity."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _numpy_op(x: torch.Tensor, fn: Any) -> torch.Tensor:
    """Apply a numpy function to ``x`` (float32) and return a tensor with a straight-through gradient."""
    y = np.ascontiguousarray(fn(x.detach().to(torch.float32).cpu().numpy()), dtype=np.float32)
    y = torch.from_numpy(y).to(x.device, x.dtype)
    return _STE.apply(x, y) if x.requires_grad else y


def _bcast(v: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    """Per-channel vector ``v`` shaped to broadcast along ``axis`` of an ``ndim`` tensor."""
    if axis is None:
        return v.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


class RangeQuantizer:
    """Fake-quantize tensors with fixed ranges ``lo``/``hi`` (scalars, or vectors along ``axis``)."""

    def __init__(self, spec: Spec, lo: Any, hi: Any, axis: int | None = None) -> None:
        if kind(spec) != "ranged":
            raise ValueError(f"{spec.label()} has per-block scales; it cannot use a fixed range")
        self.spec, self.axis = spec, axis
        self.lo = np.atleast_1d(np.asarray(lo, np.float32))
        self.hi = np.atleast_1d(np.asarray(hi, np.float32))
        if self.lo.shape != self.hi.shape or (axis is None and self.lo.size != 1):
            raise ValueError(f"range shapes {self.lo.shape}/{self.hi.shape} do not match axis={axis}")
        if not (np.isfinite(self.lo).all() and np.isfinite(self.hi).all()):
            raise ValueError(f"{spec.label()}: the observed range is not finite (lo={self.lo}, hi={self.hi})")
        fmt = formats.get(spec)
        if is_integer(spec):
            self.qmin, self.qmax, sym = int_grid(spec)
            # the format's own rule applied to a two-value "group" [lo, hi] per channel
            self.scale, self.zero_point = integer.qparams(np.stack([self.lo, self.hi], axis=1), fmt.bits, sym)
        else:
            self.scale = absmax_scales(np.maximum(np.abs(self.lo), np.abs(self.hi)), fmt.max)
            self.zero_point = np.zeros(self.scale.shape, np.int32)
            self.fmt = fmt
        self._scale_t = torch.from_numpy(self.scale)
        self._zp_t = torch.from_numpy(self.zero_point.astype(np.int32))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        axis = None if self.axis is None else self.axis % x.ndim
        if is_integer(self.spec):
            if axis is None:
                return torch.fake_quantize_per_tensor_affine(
                    x, float(self.scale[0]), int(self.zero_point[0]), self.qmin, self.qmax
                )
            return torch.fake_quantize_per_channel_affine(
                x, self._scale_t.to(x.device), self._zp_t.to(x.device), axis, self.qmin, self.qmax
            )
        s = _bcast(self.scale, x.ndim, axis)
        return _numpy_op(x, lambda a: self.fmt.cast(a / s, saturate=True) * s)


class RoundtripQuantizer:
    """Encode/decode tensors with a block-scaled (or unscaled) format along ``axis`` (moved last);
    ``lo``/``hi`` (optional, per tensor) clip first."""

    def __init__(self, spec: Spec, axis: int = -1, lo: Any = None, hi: Any = None) -> None:
        self.spec, self.axis = spec, axis
        self.fmt = formats.get(spec)
        self.lo = None if lo is None else float(np.min(lo))
        self.hi = None if hi is None else float(np.max(hi))

    def row_ok(self, n: int) -> bool:
        return self.fmt.accepts_row(n, **self.spec.options)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xt = x.movedim(self.axis, -1)
        if self.lo is not None:
            xt = xt.clamp(self.lo, self.hi)
        y = _numpy_op(xt, lambda a: self.fmt.decode(self.fmt.encode(a, **self.spec.options)))
        return y.movedim(-1, self.axis)


def quantizer(spec: Spec, lo: Any = None, hi: Any = None, axis: int | None = None, row_axis: int = -1) -> Any:
    """The quantizer of a format: ranged with ``[lo, hi]`` (``axis``: per-channel ranges), or roundtrip
    along ``row_axis`` (clipped to ``[lo, hi]`` if given)."""
    if kind(spec) == "ranged":
        return RangeQuantizer(spec, lo, hi, axis)
    if kind(spec) == "cast":
        return RoundtripQuantizer(spec, row_axis)
    return RoundtripQuantizer(spec, row_axis, lo, hi)


def dynamic_range(x: torch.Tensor, spec: Spec, per_row: bool) -> torch.Tensor:
    """Fake-quantize ``x`` with its own range: per tensor, or per row of the last axis (per token)."""
    if kind(spec) != "ranged":
        return RoundtripQuantizer(spec, -1)(x)
    if not per_row:
        lo, hi = torch.aminmax(x.detach())
        return RangeQuantizer(spec, lo.item(), hi.item())(x)
    rows = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)
    lo, hi = torch.aminmax(rows.detach(), dim=1)
    return RangeQuantizer(spec, lo.cpu().numpy(), hi.cpu().numpy(), axis=0)(rows).reshape(x.shape)


def weight_roundtrip(w: torch.Tensor, spec: Spec) -> tuple[np.ndarray, int]:
    """``(decode(encode(w as rows)), nbytes)``: a weight as (out, in*kh*kw) rows through the format."""
    fmt = formats.get(spec)
    rows = formats.base.as_float32(w.detach()).reshape(w.shape[0], -1)
    enc = fmt.encode(rows, **spec.options)
    return fmt.decode(enc).reshape(tuple(w.shape)), int(enc.nbytes)


__all__ = [
    "RangeQuantizer", "RoundtripQuantizer", "dynamic_range", "is_integer", "kind", "quantizer", "weight_roundtrip",
]  # fmt: skip
