"""Linear (uniform affine) quantization in a few lines, for lessons 02-03.

    s = (clip * range) / (qmax - qmin)        q = clamp(round(x / s) + z, qmin, qmax)        x_hat = (q - z) * s

Symmetric: z = 0, codes ``-(2**(b-1) - 1) .. 2**(b-1) - 1`` and ``range = 2 * absmax``, so
``s = clip * absmax / qmax``. Asymmetric: codes ``0 .. 2**b - 1``, the range ``[min(x, 0), max(x, 0)]``
(zero stays exact) and ``z = qmin - round(lo / s)``. ``clip < 1`` shrinks the range: more resolution
for most values, clipping error for the largest. With ``clip=1`` this is exactly qlab's
``int{b}`` format with one scale per tensor / per row / per group (``qlab.formats``), which the
tests also check against ``torch.fake_quantize_per_tensor_affine``.

:func:`sqnr_vs_bits` and :func:`db_per_bit` measure the "~6 dB per bit" rule on a real tensor;
:func:`granularity_table` and :func:`inject_outlier` show what one outlier does to a shared scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .. import formats
from ..formats.base import as_float32
from ..formats.integer import grouped, qrange
from .error import error_stats, sqnr_db


def linear_quantize(x: Any, bits: int, symmetric: bool = True, clip: float = 1.0,
                    granularity: str = "tensor", group_size: int = 128) -> dict[str, Any]:
    """Quantize ``x`` to ``bits``-bit integers with min-max scales shrunk by ``clip`` (0 < clip <= 1).

    Returns ``codes`` (int32, shape of ``x``), ``scale`` (float32 per scale group), ``zero_point``
    (int32 per group), ``qmin``/``qmax``, ``decoded`` (float32) and ``clipped`` (fraction of values
    outside the representable range, which therefore saturate).
    """
    if not 0 < clip <= 1:
        raise ValueError(f"clip must be in (0, 1], got {clip}")
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be 2..8, got {bits}")
    x32 = as_float32(x)
    g = grouped(x32, granularity, group_size)
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        scale = np.abs(g).max(axis=1) * np.float32(clip) / np.float32(qmax)
    else:
        lo = np.minimum(g.min(axis=1), 0) * np.float32(clip)
        hi = np.maximum(g.max(axis=1), 0) * np.float32(clip)
        scale = (hi - lo) / np.float32(qmax - qmin)
    scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
    zp = np.zeros(g.shape[0], np.int32) if symmetric else np.clip(qmin - np.rint(lo / scale), qmin, qmax).astype(np.int32)
    t = np.rint(g * (np.float32(1) / scale)[:, None]) + zp[:, None]
    codes = np.clip(t, qmin, qmax).astype(np.int32)
    decoded = ((codes - zp[:, None]).astype(np.float32) * scale[:, None]).reshape(x32.shape)
    return {"codes": codes.reshape(x32.shape), "scale": scale, "zero_point": zp, "qmin": qmin, "qmax": qmax,
            "decoded": decoded, "clipped": float(np.mean((t < qmin) | (t > qmax)))}


def sqnr_vs_bits(x: Any, bits: Iterable[int] = range(2, 9), symmetric: bool = True,
                 granularity: str = "tensor", **options: Any) -> list[dict[str, Any]]:
    """SQNR (and error stats) of qlab's ``int{b}`` format on ``x`` for each ``b`` in ``bits``."""
    rows = []
    for b in bits:
        y = formats.roundtrip(x, f"int{b}", symmetric=symmetric, granularity=granularity, **options)
        rows.append({"bits": int(b), **error_stats(as_float32(x), y)})
    return rows


def db_per_bit(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Least-squares line ``sqnr_db = slope * bits + intercept`` through :func:`sqnr_vs_bits` rows."""
    b = np.array([r["bits"] for r in rows], np.float64)
    s = np.array([r["sqnr_db"] for r in rows], np.float64)
    if b.size < 2:
        raise ValueError("need at least two bit widths to fit a slope")
    slope, intercept = np.polyfit(b, s, 1)
    return {"slope_db_per_bit": float(slope), "intercept_db": float(intercept)}


def clip_sweep(x: Any, bits: int, clips: Iterable[float], symmetric: bool = True) -> list[dict[str, Any]]:
    """SQNR and clipped fraction of :func:`linear_quantize` (one scale per tensor) for each ``clip``."""
    x32 = as_float32(x)
    rows = []
    for c in clips:
        r = linear_quantize(x32, bits, symmetric, clip=float(c))
        rows.append({"clip": float(c), "sqnr_db": sqnr_db(x32, r["decoded"]), "clipped": r["clipped"],
                     "scale": float(r["scale"][0])})
    return rows


def inject_outlier(x: Any, factor: float, index: tuple[int, ...] | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """A copy of ``x`` with one value set to ``factor * max|x|`` (at ``index``, default: the centre).

    Returns the new array and the index used."""
    y = as_float32(x).copy()
    idx = tuple(s // 2 for s in y.shape) if index is None else tuple(index)
    y[idx] = np.float32(factor) * np.abs(y).max()
    return y, idx


def granularity_table(x: Any, bits: int = 4, group_sizes: Iterable[int] = (128, 32),
                      exclude: tuple[int, ...] | None = None, symmetric: bool = True) -> list[dict[str, Any]]:
    """qlab's ``int{bits}`` with one scale per tensor, per row (channel) and per group of each size.

    Each row: ``granularity``, ``scales`` (how many), ``nbytes`` (codes + scales, as stored),
    ``bits_per_weight``, ``sqnr_db`` over all values and ``sqnr_rest_db`` over all values but
    ``exclude`` (an injected outlier: its own power would otherwise dominate the signal).
    """
    x32 = as_float32(x)
    mask = np.ones(x32.shape, bool)
    if exclude is not None:
        mask[exclude] = False
    options = [("tensor", {"granularity": "tensor"}), ("channel", {"granularity": "channel"})]
    options += [(f"group {g}", {"granularity": "group", "group_size": int(g)}) for g in group_sizes]
    fmt = formats.get(f"int{bits}")
    rows = []
    for label, o in options:
        enc = fmt.encode(x32, symmetric=symmetric, **o)
        y = fmt.decode(enc)
        rows.append({"granularity": label, "scales": int(enc.parts["scale"].size), "nbytes": enc.nbytes,
                     "bits_per_weight": enc.bits_per_weight, "sqnr_db": sqnr_db(x32, y),
                     "sqnr_rest_db": sqnr_db(x32[mask], y[mask])})
    return rows


__all__ = ["linear_quantize", "sqnr_vs_bits", "db_per_bit", "clip_sweep", "inject_outlier", "granularity_table"]
