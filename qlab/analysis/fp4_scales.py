"""FP4 (E2M1) blocks under different block sizes and scale rules, to separate the causes of the
MXFP4 / NVFP4 gap (lesson 05).

MXFP4 and NVFP4 share the E2M1 element grid ({0, 0.5, 1, 1.5, 2, 3, 4, 6} and signs) and differ in
three ways at once: the block size (32 vs 16), the scale's precision (a power of two, E8M0, vs an FP8
E4M3 value under an fp32 tensor scale), and the rule that picks the scale. OCP MX v1.0 takes
``X = 2**(floor(log2 amax) - 2)``, so ``amax / X`` lies in [4, 8) and a block maximum above 6 X is
*clipped* to 6 X (up to 25 % of the block's largest value). :func:`fp4_roundtrip` runs any block
size with any of these scale rules:

* ``"pow2_floor"``: OCP MX's rule (block 32: exactly qlab's ``mxfp4``);
* ``"pow2_ceil"``: the smallest power of two with ``amax / X <= 6``: no clipping, coarser steps;
* ``"e4m3"``: NVFP4's two-level scale, ``amax / 6`` rounded to E4M3 under a tensor scale
  ``max|x| / (448 * 6)`` (block 16: exactly qlab's ``nvfp4``);
* ``"fp32"``: the exact ``amax / 6``, the ideal scale for this grid.
"""

from __future__ import annotations

import numpy as np

from ..formats.microscaling import E2M1, E4M3

SCALE_RULES = ("pow2_floor", "pow2_ceil", "e4m3", "fp32")


def _block_scales(blocks: np.ndarray, rule: str, x: np.ndarray) -> np.ndarray:
    amax = np.max(np.abs(blocks), axis=1).astype(np.float64)
    safe = np.where(amax > 0, amax, np.finfo(np.float32).tiny)
    if rule == "pow2_floor":
        return np.exp2(np.floor(np.log2(safe)) - 2)
    if rule == "pow2_ceil":
        return np.exp2(np.ceil(np.log2(safe / 6)))
    if rule == "fp32":
        return safe / 6
    if rule == "e4m3":
        ts = np.float32(np.max(np.abs(x)) / np.float32(448 * 6))
        if ts == 0:
            return np.ones_like(amax)
        rel = (amax.astype(np.float32) / np.float32(6)) / ts
        code = E4M3.encode(np.clip(rel, np.float32(2.0**-6), np.float32(448)), saturate=True)
        return (ts * E4M3.decode(code)).astype(np.float64)
    raise ValueError(f"unknown scale rule {rule!r}; valid: {', '.join(SCALE_RULES)}")


def fp4_roundtrip(x: np.ndarray, block: int = 32, scale: str = "pow2_floor") -> np.ndarray:
    """``x`` (rows a multiple of ``block`` long) through E2M1 blocks of ``block`` values with one
    scale per block chosen by ``scale`` (see :data:`SCALE_RULES`); elements round to nearest and
    clamp to +-6 (E2M1 saturation)."""
    x = np.asarray(x, np.float32)
    if x.shape[-1] % block:
        raise ValueError(f"row length {x.shape[-1]} is not a multiple of the block {block}")
    blocks = x.reshape(-1, block)
    s = _block_scales(blocks, scale, x).astype(np.float32)
    codes = E2M1.encode(blocks / s[:, None], saturate=True)
    return (E2M1.decode(codes) * s[:, None]).reshape(x.shape).astype(np.float32)


def clipped_fraction(x: np.ndarray, block: int = 32) -> float:
    """Fraction of blocks whose maximum OCP's ``floor(log2)`` rule clips (``amax / X > 6``)."""
    blocks = np.asarray(x, np.float32).reshape(-1, block)
    amax = np.max(np.abs(blocks), axis=1).astype(np.float64)
    amax = amax[amax > 0]
    return float(np.mean(amax / np.exp2(np.floor(np.log2(amax)) - 2) > 6))


def mx_block_max(amax: np.ndarray) -> np.ndarray:
    """The largest magnitude an MXFP4 block with maximum ``amax`` can hold under OCP's rule:
    ``6 * 2**(floor(log2 amax) - 2)``; below ``amax`` (clipped) when the mantissa of ``amax`` is
    above 1.5, i.e. ``amax`` in ``(6, 8) * 2**k``."""
    a = np.asarray(amax, np.float64)
    if np.any(~np.isfinite(a)) or np.any(a <= 0):
        raise ValueError("amax must be finite and > 0")
    return 6 * np.exp2(np.floor(np.log2(a)) - 2)


__all__ = ["SCALE_RULES", "fp4_roundtrip", "clipped_fraction", "mx_block_max"]
