"""qlab's simulations of the ONNX Runtime schemes, to hold the real runtime to.

* :func:`simulate_dynamic` -- a float copy of a sentence encoder whose ``nn.Linear`` layers
  fake-quantize their weights with qlab's ``int8`` (symmetric, ``s = max|w| / 127``: ORT's
  symmetric QInt8 range is ``[-127, 127]``, the same restricted range) and their input per call
  with qlab's ``int8``, ``symmetric=False, granularity="tensor"`` (``DynamicQuantizeLinear``:
  uint8, ``s = (max(x, 0) - min(x, 0)) / 255``, ``z = round(-min / s)``). ``MatMulInteger``
  accumulates exactly in int32, so one layer agrees with ORT to float32 rounding.
* :func:`simulate_qdq` -- a static QDQ file evaluated by onnx's *reference* interpreter
  (``onnx.reference``, pure numpy) with ``QuantizeLinear`` / ``DequantizeLinear`` replaced by
  qlab's integer quantizer: the scales and zero-points are the ones ORT calibrated, the
  rounding and clamping are qlab's, every other op is plain float32.
* :func:`simulate_weight_only` -- a float copy with ``Linear`` weights := :func:`block_weights`,
  qlab's blockwise integer quantizer with ORT's scale and rounding rules (bit-exact).
  :func:`matmul_nbits_weights` decodes the weights actually stored in a ``MatMulNBits`` file.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from onnx.reference.op_run import OpRun

from ...core.fakequant import FakeQuantLinear, replace_linears
from ...core.model import Loaded
from ...formats import roundtrip
from ...formats.integer import dequantize, quantize
from .export import BACKEND


def _require_encoder(m: Loaded, what: str) -> None:
    # a traced sentence encoder turns every nn.Linear into MatMul (+ Add): the layers ORT
    # quantizes are exactly the Linear modules. digits-cnn's Linear layers become Gemm instead.
    if m.kind != "sentence-encoder":
        raise ValueError(f"{BACKEND}: {what} simulation covers sentence encoders (Linear -> MatMul), not a {m.kind}")


def _replace_linears(m: Loaded, w_hat: Any, act: dict[str, Any] | None = None) -> Any:
    """Every ``nn.Linear`` of a copy of ``m`` as a :class:`FakeQuantLinear` with weight
    ``w_hat(float weight)`` and int8 inputs rounded with ``act`` (None: float inputs)."""
    return replace_linears(m, lambda lin: FakeQuantLinear(
        lin, w_hat(lin.weight.detach().float().numpy()), None if act is None else "int8", act))


def simulate_dynamic(m: Loaded, weights: str = "int8", per_channel: bool = False) -> Any:
    """qlab's simulation of :func:`.quantize.quantize_dynamic` on a sentence encoder."""
    _require_encoder(m, "dynamic")
    gran = "channel" if per_channel else "tensor"
    wopts = {"symmetric": weights == "int8", "granularity": gran}
    act = {"symmetric": False, "granularity": "tensor"}
    return _replace_linears(m, lambda w: roundtrip(w, "int8", **wopts), act)


def _round_half_away(t: np.ndarray) -> np.ndarray:
    """C ``roundf``: halves away from zero, computed exactly (``floor(t + 0.5)`` can round up
    ``0.49999997``)."""
    r = np.trunc(t)
    return r + np.where(np.abs(t - r) >= 0.5, np.sign(t), 0)


def block_weights(w: np.ndarray, block_size: int = 32, bits: int = 4, symmetric: bool = False) -> np.ndarray:
    """The weights ``MatMulNBits`` stores, computed with qlab's integer quantizer (bit-exact).

    Scale and zero-point: ``symmetric=False`` -- qlab's asymmetric min-max rule
    (:func:`qlab.formats.integer.qparams`, which is ORT's); ``symmetric=True`` -- ``s = v / -2**(bits-1)``
    with ``v`` the block's value of largest magnitude, sign kept, and codes offset by ``2**(bits-1)``.
    Rounding quirk: ORT adds the zero-point *before* rounding, in float32, and rounds halves away
    from zero: ``q = roundf(w * (1 / s) + z)``. qlab's ``int4`` computes ``rint(w * (1 / s)) + z``;
    the two differ only where ``w / s`` is within float32 rounding of a half (a handful of MiniLM's
    2M weights), see :func:`qlab.formats.roundtrip` with ``"int4", symmetric=False, granularity="group"``.
    """
    from ...formats.integer import qparams

    g = w.astype(np.float32).reshape(-1, block_size)
    hi = 2**bits - 1
    if symmetric:
        v = np.take_along_axis(g, np.abs(g).argmax(axis=1)[:, None], axis=1)[:, 0]
        scale = (v / np.float32(-(2 ** (bits - 1)))).astype(np.float32)
        scale = np.where(scale != 0, scale, np.float32(1.0)).astype(np.float32)  # an all-zero block decodes to 0
        zp = np.full(scale.size, 2 ** (bits - 1), np.int32)
    else:
        scale, zp = qparams(g, bits, False)
    t = (g * (np.float32(1.0) / scale)[:, None]).astype(np.float32) + zp[:, None].astype(np.float32)
    codes = np.clip(_round_half_away(t), 0, hi).astype(np.int32)
    return dequantize(codes, scale, zp).reshape(w.shape)


def simulate_weight_only(m: Loaded, weights: str = "int4", block_size: int = 32, symmetric: bool = False) -> Any:
    """qlab's simulation of :func:`.quantize.quantize_weight_only` (float activations)."""
    _require_encoder(m, "weight-only")
    bits = int(weights[3:])
    return _replace_linears(m, lambda w: block_weights(w, block_size, bits, symmetric))


def matmul_nbits_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The float weights stored in each ``MatMulNBits`` node, as ``(N, K)`` arrays (torch's
    ``Linear`` orientation), decoded from the packed codes, scales and zero-points."""
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    out = {}
    for node in proto.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        at = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        n, k, bits, bs = at["N"], at["K"], at["bits"], at["block_size"]
        nb = -(-k // bs)
        packed = inits[node.input[1]].reshape(n, -1)
        per_byte = 8 // bits
        shifts = np.arange(per_byte, dtype=np.uint8) * bits  # low bits first
        codes = ((packed[..., None] >> shifts) & ((1 << bits) - 1)).reshape(n, -1)[:, : nb * bs].astype(np.int32)
        scales = inits[node.input[2]].reshape(n, nb).astype(np.float32)
        if len(node.input) > 3 and node.input[3]:
            zp = inits[node.input[3]].reshape(n, -1)
            zp = ((zp[..., None] >> shifts) & ((1 << bits) - 1)).reshape(n, -1)[:, :nb].astype(np.int32)
        else:
            zp = np.full((n, nb), 1 << (bits - 1), np.int32)
        w = dequantize(codes.reshape(n * nb, bs), scales.reshape(-1), zp.reshape(-1)).reshape(n, nb * bs)
        out[node.input[1]] = w[:, :k]
    return out


# -------------------------------------------------------------- QDQ in onnx.reference with qlab Q/DQ
def _groups(x: np.ndarray, scale: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    if scale.ndim == 0 or scale.size == 1:
        return x.reshape(1, -1), -1
    axis = axis % x.ndim
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1), axis


def _ungroup(g: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    if axis < 0:
        return g.reshape(shape)
    moved = (shape[axis], *shape[:axis], *shape[axis + 1 :])
    return np.moveaxis(g.reshape(moved), 0, axis)


class QuantizeLinear(OpRun):
    """``QuantizeLinear`` by qlab: ``clamp(rint(x * (1 / s)) + z)`` per tensor or per axis."""

    def _run(
        self, x: np.ndarray, y_scale: np.ndarray, y_zero_point: np.ndarray | None = None, axis: int = 1,
        saturate: int = 1, block_size: int = 0, output_dtype: int = 0, precision: int = 0,
    ) -> tuple[np.ndarray]:
        z = np.zeros((), np.uint8) if y_zero_point is None else y_zero_point
        info = np.iinfo(z.dtype)
        g, ax = _groups(x.astype(np.float32), y_scale, axis)
        s = np.asarray(y_scale, np.float32).reshape(-1)
        codes = quantize(g, s, np.asarray(z, np.int32).reshape(-1), int(info.min), int(info.max))
        return (_ungroup(codes, x.shape, ax).astype(z.dtype),)


class DequantizeLinear(OpRun):
    """``DequantizeLinear`` by qlab: ``(q - z) * s`` in float32."""

    def _run(
        self, x: np.ndarray, x_scale: np.ndarray, x_zero_point: np.ndarray | None = None, axis: int = 1,
        block_size: int = 0, output_dtype: int = 0,
    ) -> tuple[np.ndarray]:
        z = np.zeros(np.shape(x_scale), np.int32) if x_zero_point is None else x_zero_point
        g, ax = _groups(x, x_scale, axis)
        s = np.asarray(x_scale, np.float32).reshape(-1)
        return (_ungroup(dequantize(g.astype(np.int32), s, np.asarray(z, np.int32).reshape(-1)), x.shape, ax),)


def simulate_qdq(path: str | os.PathLike, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The first output of a QDQ ONNX file evaluated by ``onnx.reference`` with qlab's Q/DQ."""
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(str(path), new_ops=[QuantizeLinear, DequantizeLinear]).run(None, feed)[0]


__all__ = [
    "DequantizeLinear",
    "QuantizeLinear",
    "matmul_nbits_weights",
    "simulate_dynamic",
    "simulate_qdq",
    "simulate_weight_only",
    "block_weights",
]
