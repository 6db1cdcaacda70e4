"""qlab's simulation of NNCF's integer weight compression, and the codes read back from an IR.

NNCF 3.4 (``nncf/quantization/algorithms/weight_compression/weight_lowering.py`` and
``nncf/quantization/fake_quantize.py``), for a weight whose reduction axis runs over the inputs
of a ``MatMul`` (per output channel, or per ``group_size`` consecutive inputs):

* **asymmetric** (``int8_asym``, ``int4_asym``), levels ``0 .. 2^b - 1``: the range is widened to
  hold zero, ``lo = min(0, min w)``, ``hi = max(0, max w)``; ``s = (hi - lo) / (2^b - 1)``;
  ``z = clip(-round(lo / s), 0, 2^b - 1)``; ``q = clip(round(w / s + z), 0, 2^b - 1)``; decoded
  ``(q - z) * s``.
* **symmetric** (``int8_sym``, ``int4_sym``), levels ``-2^(b-1) .. 2^(b-1) - 1``: a *signed* scale
  ``s = v / 2^(b-1)`` with ``v`` the weight of largest magnitude, its sign flipped when it is
  positive (``v = |min w|`` if ``|min w| >= max w`` else ``-max w``), so the largest-magnitude
  weight lands on ``-2^(b-1)`` and the full range is used (llama.cpp's Q4_0 rule);
  ``q = clip(round(w / s), -2^(b-1), 2^(b-1) - 1)``; decoded ``q * s``.

NNCF computes ``s`` in float32 and stores it as float16 in the IR; the CPU plugin decodes with
the stored f16 scale. :func:`simulate` does the same. Rounding is half-to-even (numpy's
``round``); NNCF's OpenVINO-accelerated path can land on the other side of an exact .5 for a
handful of weights, which the cross-check tests bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .convert import BACKEND

MODES = {"int8_asym": (8, True), "int8_sym": (8, False), "int4_asym": (4, True), "int4_sym": (4, False)}


@dataclass
class Compressed:
    """Integer codes ``(groups, group_size, out)``, scales and zero points ``(groups, 1, out)``
    (zero points ``None`` for symmetric) of one ``MatMul`` weight ``(in, out)``."""

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None

    def decode(self) -> np.ndarray:
        """The float32 weight ``(in, out)`` the runtime multiplies by."""
        q = self.codes.astype(np.float32)
        if self.zero_point is not None:
            q = q - self.zero_point.astype(np.float32)
        w = (q.astype(np.float16) * self.scale.astype(np.float16)).astype(np.float32)  # f16 math, as the IR
        return w.reshape(-1, w.shape[-1])


def _grouped(w: np.ndarray, group_size: int) -> np.ndarray:
    """``(in, out)`` -> ``(groups, group_size, out)`` (one group = all inputs when -1)."""
    if w.ndim != 2:
        raise ValueError(f"{BACKEND}: expected a 2-D MatMul weight (in, out), got shape {w.shape}")
    k = w.shape[0]
    g = k if group_size == -1 else group_size
    if k % g:
        raise ValueError(f"{BACKEND}: {k} inputs are not a multiple of group_size {group_size}")
    return w.reshape(k // g, g, w.shape[1])


def compress(w: np.ndarray, mode: str = "int4_asym", group_size: int = -1) -> Compressed:
    """qlab's codes, f16 scales and zero points of NNCF's ``mode`` for a ``MatMul`` weight ``(in, out)``."""
    if mode not in MODES:
        raise ValueError(f"{BACKEND}: mode must be one of {tuple(MODES)}, got {mode!r}")
    bits, asym = MODES[mode]
    x = _grouped(np.asarray(w, dtype=np.float32), group_size)
    eps = np.finfo(np.float32).eps
    if asym:
        lo = np.minimum(x.min(axis=1, keepdims=True), 0)
        hi = np.maximum(x.max(axis=1, keepdims=True), 0)
        top = 2**bits - 1
        s = ((hi - lo) / top).astype(np.float32)
        s = np.where(np.abs(s) < eps, eps, s)
        z = np.clip(-np.round(lo / s), 0, top).astype(np.int32)
        q = np.clip(np.round(x / s + z), 0, top)
        return Compressed(q.astype(np.uint8), s.astype(np.float16), z.astype(np.uint8))
    half = 2 ** (bits - 1)
    mn, mx = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    s = (np.where(np.abs(mn) >= mx, np.abs(mn), -mx) / half).astype(np.float32)
    s = np.where(np.abs(s) < eps, eps, s)
    q = np.clip(np.round(x / s), -half, half - 1)
    return Compressed(q.astype(np.int8), s.astype(np.float16), None)


def simulate(w: np.ndarray, mode: str = "int4_asym", group_size: int = -1) -> np.ndarray:
    """The weight ``(in, out)`` as the compressed IR holds it (codes decoded with f16 scales)."""
    return compress(w, mode, group_size).decode()


# ------------------------------------------------------------------------------- reading an IR
def _unpack4(raw: np.ndarray, n: int, signed: bool) -> np.ndarray:
    """OpenVINO's 4-bit constants: two values per byte, the first in the low nibble."""
    b = raw.view(np.uint8).ravel()
    v = np.empty(2 * b.size, dtype=np.uint8)
    v[0::2], v[1::2] = b & 0x0F, b >> 4
    v = v[:n]
    return (v.astype(np.int8) - 16 * (v >= 8)).astype(np.int8) if signed else v


def constant_values(op: Any) -> np.ndarray:
    """A ``Constant``'s values with their shape (4-bit types unpacked)."""
    shape = tuple(op.get_output_partial_shape(0).to_shape())
    t = op.get_element_type().to_string()
    raw = op.get_data()
    if t in ("u4", "i4"):
        return _unpack4(raw, int(np.prod(shape)), t == "i4").reshape(shape)
    return np.array(raw).reshape(shape)


def _const_input(node: Any) -> tuple[Any, Any]:
    """Of a binary op's inputs: (the one that is a Constant, possibly behind a Convert; the other)."""
    a, b = (node.input_value(i).get_node() for i in (0, 1))
    for c, other in ((b, a), (a, b)):
        base = c.input_value(0).get_node() if c.get_type_name() == "Convert" else c
        if base.get_type_name() == "Constant":
            return base, other
    raise ValueError(f"{BACKEND}: {node.get_friendly_name()} has no constant input")


def compressed_weights(model: Any) -> dict[str, Compressed]:
    """Codes, scales and zero points of every compressed ``MatMul`` weight of an IR, keyed by the
    ``MatMul``'s name (the decompression subgraph ``Constant -> Convert -> [Subtract zp] ->
    Multiply scale -> [Reshape] -> [Convert] -> MatMul`` that ``nncf.compress_weights`` writes)."""
    out: dict[str, Compressed] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        node, scale, zp, codes = op.input_value(1).get_node(), None, None, None
        for _ in range(8):
            kind = node.get_type_name()
            if kind in ("Convert", "Reshape"):
                node = node.input_value(0).get_node()
            elif kind == "Multiply":
                c, node = _const_input(node)
                scale = constant_values(c)
            elif kind == "Subtract":
                c, node = _const_input(node)
                zp = constant_values(c)
            elif kind == "Constant":
                if node.get_element_type().to_string() in ("u8", "i8", "u4", "i4"):
                    codes = constant_values(node)
                break
            else:
                break
        if codes is not None and scale is not None:
            if codes.ndim == 2:  # per output channel: (in, out) with a (1, out) scale
                codes, scale = codes[None], scale.reshape(1, 1, -1)
                zp = None if zp is None else zp.reshape(1, 1, -1)
            out[op.get_friendly_name()] = Compressed(codes, scale, zp)
    return out


__all__ = ["MODES", "Compressed", "compress", "compressed_weights", "constant_values", "simulate"]
