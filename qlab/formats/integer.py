"""Integer affine quantization ``int1`` ... ``int8`` (Jacob et al., 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference").

    q = clamp(round(x / s) + z, qmin, qmax)          x_hat = (q - z) * s

* ``symmetric=True``: z = 0 and the *restricted* signed range ``[-(2**(b-1) - 1), 2**(b-1) - 1]``
  (int8: -127..127), s = absmax / qmax. Zero is exact and the grid is symmetric around it.
* ``symmetric=False``: unsigned range ``[0, 2**b - 1]``; the range is widened to include 0
  (as PyTorch's observers do) so that zero stays exactly representable:
  s = (max(x_max, 0) - min(x_min, 0)) / (qmax - qmin), z = qmin - round(min(x_min, 0) / s).
* ``granularity``: ``"tensor"`` (one s, z), ``"channel"`` (one per row = per output channel of a
  ``Linear`` weight), ``"group"`` (one per ``group_size`` consecutive values of a row).
* ``rounding``: ``"nearest"`` (half to even, as ``torch.fake_quantize_*`` uses ``nearbyint``)
  or ``"stochastic"`` (``floor(x/s + u)``, u ~ U[0, 1) from ``seed``): unbiased, E[x_hat] = x.

Exactness: like PyTorch's fake-quantize kernels, the code is ``nearbyint(x * (1/s))`` with the
reciprocal taken in float32 (not ``x / s``), and the result ``(q - z) * s`` in float32, so the
simulated values equal ``torch.fake_quantize_per_{tensor,channel}_affine`` bit for bit.

Storage (``nbytes``): codes packed at ``bits`` bits, one fp32 scale per scale group and, for
asymmetric, one byte per zero-point.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .base import Encoded, Format, Layout, check_finite, register

GRANULARITIES = ("tensor", "channel", "group")
ROUNDINGS = ("nearest", "stochastic")


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax) of a ``bits``-bit integer grid."""
    if symmetric:
        m = 2 ** (bits - 1) - 1
        return -m, m
    return 0, 2**bits - 1


def grouped(x: np.ndarray, granularity: str, group_size: int) -> np.ndarray:
    """Reshape ``x`` to (n_scale_groups, values_per_group) following the granularity."""
    if granularity == "tensor":
        return x.reshape(1, -1)
    row = x.shape[-1] if x.ndim else 1
    if granularity == "channel":
        return x.reshape(x.size // row if row else int(np.prod(x.shape[:-1])), row)
    if row % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide the row length {row} (last axis of shape {x.shape})"
        )
    return x.reshape(-1, group_size)


def qparams(g: np.ndarray, bits: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale (float32) and zero-point (int32) per group of ``g`` (n_groups, k), min-max rule."""
    qmin, qmax = qrange(bits, symmetric)
    if g.shape[1] == 0:
        n = g.shape[0]
        return np.ones(n, np.float32), np.zeros(n, np.int32)
    if symmetric:
        amax = np.abs(g).max(axis=1)
        scale = amax / np.float32(qmax)
        zp = np.zeros(g.shape[0], np.int32)
    else:
        lo = np.minimum(g.min(axis=1), 0)
        hi = np.maximum(g.max(axis=1), 0)
        scale = (hi - lo) / np.float32(qmax - qmin)
    # an all-zero group has no range: any positive scale represents it exactly (codes = z)
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    if not symmetric:
        zp = np.clip(qmin - np.rint(lo / scale), qmin, qmax).astype(np.int32)
    return scale, zp


def quantize(
    g: np.ndarray,
    scale: np.ndarray,
    zp: np.ndarray,
    qmin: int,
    qmax: int,
    rounding: str = "nearest",
    seed: int | None = None,
) -> np.ndarray:
    """Integer codes (int32) of ``g`` (n_groups, k) with per-group ``scale``/``zp``."""
    with np.errstate(over="ignore"):
        inv = np.float32(1.0) / scale  # float32 reciprocal, as torch's kernels
    # a subnormal scale (all |x| < ~1e-36) has no finite reciprocal: divide for those groups
    t = np.where(np.isfinite(inv)[:, None], g * inv[:, None], g / scale[:, None])
    if rounding == "nearest":
        r = np.rint(t)
    else:
        u = np.random.default_rng(seed).random(t.shape, dtype=np.float32)
        r = np.floor(t + u)
    return np.clip(r + zp[:, None], qmin, qmax).astype(np.int32)


def dequantize(q: np.ndarray, scale: np.ndarray, zp: np.ndarray) -> np.ndarray:
    """``(q - z) * s`` in float32."""
    return (q - zp[:, None]).astype(np.float32) * scale[:, None]


def _check_range(name: str, o: dict[str, Any], g: np.ndarray, scale: np.ndarray, codes: np.ndarray, zp: np.ndarray) -> None:
    """Near the float32 maximum, ``max - min`` (asymmetric) or a rounded-up level ``q * s`` leaves
    float32: raise instead of returning NaN/Inf for finite input."""
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.isfinite(scale) & np.isfinite(dequantize(codes, scale, zp)).all(axis=1)
    if ok.all():
        return
    i = int(np.argmin(ok))
    lo, hi = float(g[i].min()), float(g[i].max())
    raise ValueError(
        f"{name}: {o['granularity']} group {i} spans [{lo:.4g}, {hi:.4g}]; its scale or decoded levels "
        f"overflow float32 (max {float(np.finfo(np.float32).max):.4g}) with symmetric={o['symmetric']}; "
        f"scale the input down (e.g. by 4)"
    )


class IntFormat(Format):
    """``int{bits}``: affine integer quantization."""

    family: ClassVar[str] = "integer"

    def __init__(self, bits: int) -> None:
        if not 1 <= bits <= 8:
            raise ValueError(f"integer formats have 1..8 bits, got {bits}")
        self.bits = bits
        self.name = f"int{bits}"
        # int1 has no non-zero symmetric level, so it defaults to the asymmetric {min, max} grid
        self.defaults = {
            "symmetric": bits > 1,
            "granularity": "channel",
            "group_size": 128,
            "rounding": "nearest",
            "seed": None,
        }
        self.description = f"{bits}-bit affine integers with fp32 scales (per tensor/channel/group)"

    def _validate(self, o: dict[str, Any]) -> None:
        if not isinstance(o["symmetric"], bool):
            raise ValueError(f"{self.name}: symmetric must be True or False, got {o['symmetric']!r}")
        if o["symmetric"] and self.bits == 1:
            raise ValueError("int1: symmetric=True leaves only the level 0; use symmetric=False")
        if o["granularity"] not in GRANULARITIES:
            raise ValueError(f"{self.name}: granularity must be one of {GRANULARITIES}, got {o['granularity']!r}")
        gs = o["group_size"]
        if o["granularity"] == "group" and (not isinstance(gs, int | np.integer) or gs <= 0 or gs % 8):
            raise ValueError(
                f"{self.name}: group_size must be a positive multiple of 8 (so a group's codes fill "
                f"whole bytes), got {gs!r}"
            )
        if o["rounding"] not in ROUNDINGS:
            raise ValueError(f"{self.name}: rounding must be one of {ROUNDINGS}, got {o['rounding']!r}")

    def layout(self, **options: Any) -> Layout:
        o = self.options(**options)
        meta = (("scale fp32", 4),) + ((("zero-point uint8", 1),) if not o["symmetric"] else ())
        b = self.bits
        if o["granularity"] == "group":
            gs = o["group_size"]
            return Layout(gs, meta + ((f"codes {gs}x{b}bit", gs * b // 8),))
        codes = ((f"codes 8x{b}bit", b),)
        if o["granularity"] == "channel":
            return Layout(8, codes, per_row=meta)
        return Layout(8, codes, per_tensor=meta)

    def _encode(self, x: np.ndarray, **o: Any) -> Encoded:
        check_finite(self.name, x)
        g = grouped(x, o["granularity"], o["group_size"])
        qmin, qmax = qrange(self.bits, o["symmetric"])
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by _check_range
            scale, zp = qparams(g, self.bits, o["symmetric"])
        codes = quantize(g, scale, zp, qmin, qmax, o["rounding"], o["seed"])
        _check_range(self.name, o, g, scale, codes, zp)
        dtype = np.int8 if o["symmetric"] else np.uint8
        parts = {"codes": codes.astype(dtype).reshape(x.shape), "scale": scale}
        nbytes = -(-x.size * self.bits // 8) + 4 * scale.size
        if not o["symmetric"]:
            parts["zero_point"] = zp.astype(np.uint8)
            nbytes += zp.size
        return Encoded(self.name, tuple(x.shape), parts, int(nbytes), dict(o))

    def _decode(self, enc: Encoded) -> np.ndarray:
        o = enc.options
        codes = enc.parts["codes"].astype(np.int32)
        scale = enc.parts["scale"]
        zp = enc.parts["zero_point"].astype(np.int32) if "zero_point" in enc.parts else np.zeros(scale.size, np.int32)
        g = grouped(codes, o["granularity"], o["group_size"])
        return dequantize(g, scale, zp)


for _b in range(1, 9):
    register(IntFormat(_b))
