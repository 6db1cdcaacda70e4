"""GGML K-quants Q2_K, Q4_K and Q5_K: super-blocks of 256 values with an fp16 scale ``d`` and an
fp16 ``dmin``, and per-sub-block integer scales/mins; byte-exact with llama.cpp's
``quantize_row_q2_K_ref`` / ``quantize_row_q4_K_ref`` / ``quantize_row_q5_K_ref``
(ggml/src/ggml-quants.c, the path used when no importance matrix is given).

The encoder has three stages, mirroring the C reference:

1. ``make_qkx2_quants`` per sub-block (16 or 32 values): a weighted search over ``nstep + 1``
   trial scales for the affine ``x ~ scale*q - min`` with the lowest weighted error
   (numba kernel in :mod:`._kq_kernels`).
2. The sub-block scales and mins are quantized against the super-block maxima (6 bits for
   Q4_K/Q5_K, 4 bits for Q2_K); ``d = fp16(max_scale/63)`` (or ``/15``), same for ``dmin``.
3. The codes are *re-derived* from the rounded scales: ``q = clamp(nearest_int((x + dm)/d))``
   with ``d = fp16(d)*sc`` and ``dm = fp16(dmin)*m``. A sub-block whose quantized ``d`` is 0
   keeps the codes of stage 1 (C: ``if (!d) continue;``).

Decoding is ``y = d*sc*q - dmin*m`` in float32, the same expression (and rounding) as gguf-py's
``dequantize`` and llama.cpp's ``dequantize_row_q*_K``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..base import Encoded, check_finite
from ._common import GGMLFormat, fp16_from, register
from ._kq_kernels import search_q2_k, search_q4_k, search_q5_k

__all__ = ["Q2K", "Q4K", "Q5K"]

_F = np.float32


def nearest_int(v: np.ndarray) -> np.ndarray:
    """llama.cpp ``nearest_int`` on a float32 array, bit for bit: add 1.5*2^23 in float32 (the
    FPU rounds half to even) and read the low 23 mantissa bits. Also reproduces C's result for
    out-of-range values (``inf`` -> ``-2^22``), which then get clamped."""
    t = (v.astype(np.float32, copy=False) + _F(12582912.0)).view(np.int32)
    return (t & np.int32(0x007FFFFF)) - np.int32(0x00400000)


def _positive_max(v: np.ndarray) -> np.ndarray:
    """C: ``float m = 0; for (...) if (v[j] > m) m = v[j];`` -- never -0.0 or negative, and NaN
    (an overflowed search) is skipped like the C comparison does (``fmax`` ignores NaN)."""
    m = np.fmax.reduce(v, axis=1)
    return np.where(m > 0, m, _F(0.0)).astype(np.float32)


def _rederive(x: np.ndarray, d: np.ndarray, dm: np.ndarray, L0: np.ndarray, nmax: int) -> np.ndarray:
    """Stage 3: ``L = clamp(nearest_int((x + dm)/d), 0, nmax)`` per sub-block (rows of ``x``);
    where ``d == 0`` keep the search codes ``L0``. ``d``/``dm`` are float32 (m, 1)."""
    zero = d == 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = nearest_int((x + dm) / np.where(zero, _F(1.0), d))
    q = np.clip(q, 0, nmax).astype(np.uint8)
    return np.where(zero, L0, q)


def _scale_min_6bit(scales: np.ndarray, mins: np.ndarray):
    """Q4_K/Q5_K stage 2 on ``(n, 8)`` sub-block scales/mins. Returns the 12 packed scale bytes,
    the fp16 ``d``/``dmin`` (as float16 arrays) and the integer ``sc``/``m`` (n, 8)."""
    max_scale = _positive_max(scales)[:, None]
    max_min = _positive_max(mins)[:, None]
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > 0, _F(63.0) / max_scale, _F(0.0)).astype(np.float32)
        inv_min = np.where(max_min > 0, _F(63.0) / max_min, _F(0.0)).astype(np.float32)
    # C: uint8_t ls = nearest_int(...); ls = MIN(63, ls);  (the uint8 cast wraps first)
    ls = np.minimum(nearest_int(inv_scale * scales) & 0xFF, 63).astype(np.uint8)
    lm = np.minimum(nearest_int(inv_min * mins) & 0xFF, 63).astype(np.uint8)
    # 12-byte packing, the inverse of get_scale_min_k4: bytes 0-3 hold sc[0:4] plus the top 2 bits
    # of sc[4:8]; bytes 4-7 the same for m; bytes 8-11 the low nibbles of sc[4:8] | m[4:8] << 4.
    packed = np.concatenate(
        [
            ls[:, :4] | ((ls[:, 4:] >> 4) << 6),
            lm[:, :4] | ((lm[:, 4:] >> 4) << 6),
            (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4),
        ],
        axis=1,
    )
    # GGML_FP32_TO_FP16 rounds to nearest even (subnormals and overflow to inf included), as numpy
    d16 = (max_scale[:, 0] / _F(63.0)).astype(np.float16)
    dmin16 = (max_min[:, 0] / _F(63.0)).astype(np.float16)
    return packed, d16, dmin16, ls, lm


def _affine_params(d16: np.ndarray, dmin16: np.ndarray, sc: np.ndarray, m: np.ndarray):
    """Per-sub-block float32 ``d*sc`` and ``dmin*m`` as ``(n*k, 1)`` columns."""
    d = d16.astype(np.float32)[:, None] * sc.astype(np.float32)
    dm = dmin16.astype(np.float32)[:, None] * m.astype(np.float32)
    return d.reshape(-1, 1), dm.reshape(-1, 1)


def _f16_bytes(v16: np.ndarray) -> np.ndarray:
    """float16 (n,) -> its little-endian bytes (n, 2)."""
    return np.ascontiguousarray(v16, dtype=np.float16).view(np.uint8).reshape(-1, 2)


def _affine_inplace(q: np.ndarray, d: np.ndarray, dm: np.ndarray) -> np.ndarray:
    """``d*q - dm`` in float32, in place on ``q`` (same two roundings as C and gguf-py)."""
    np.multiply(q, d, out=q)
    np.subtract(q, dm, out=q)
    return q


def _unpack_6bit(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``get_scale_min_k4`` for all 8 sub-blocks: 12 bytes (n, 12) -> sc, m (n, 8) uint8."""
    lo, mid, hi = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([lo & 63, (hi & 0xF) | ((lo >> 6) << 4)], axis=1)
    m = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=1)
    return sc, m


class _KQuant(GGMLFormat):
    """Shared input checks. NaN/Inf would poison a whole super-block's scales: rejected (C has no
    defined result). Finite values so large that ``max_scale/63`` exceeds fp16 (|x| from ~1e6 up)
    give an infinite ``d``/``dmin``, exactly as llama.cpp writes it; numpy's overflow warnings for that
    reference behaviour are silenced."""

    def _encode(self, x: np.ndarray, **opts) -> Encoded:
        check_finite(self.name, x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return super()._encode(x, **opts)


class _Q45K(_KQuant):
    """Q4_K and Q5_K share everything but the code width and the search parameters."""

    nmax: int  # largest code
    search: Callable  # the make_qkx2_quants kernel with this type's constants

    def _codes(self, blocks: np.ndarray):
        n = blocks.shape[0]
        sub = blocks.reshape(-1, 32)
        scales, mins, L0 = self.search(sub)
        packed, d16, dmin16, sc, m = _scale_min_6bit(scales.reshape(n, 8), mins.reshape(n, 8))
        d, dm = _affine_params(d16, dmin16, sc, m)
        L = _rederive(sub, d, dm, L0, self.nmax).reshape(n, 8, 32)
        head = np.concatenate([_f16_bytes(d16), _f16_bytes(dmin16), packed], axis=1)
        return head, L

    def _decode_params(self, raw: np.ndarray):
        n = raw.shape[0]
        d16 = np.ascontiguousarray(raw[:, 0:2]).view(np.float16)[:, 0]
        dmin16 = np.ascontiguousarray(raw[:, 2:4]).view(np.float16)[:, 0]
        sc, m = _unpack_6bit(raw[:, 4:16])
        d, dm = _affine_params(d16, dmin16, sc, m)
        return d.reshape(n, 8, 1), dm.reshape(n, 8, 1)


class Q4K(_Q45K):
    name = "q4_k"
    description = "GGML 4-bit K-quant: 256-value super-blocks, 8 sub-blocks with 6-bit scale and min"
    nmax = 15
    search = staticmethod(search_q4_k)

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        head, L = self._codes(blocks)
        # qs: sub-blocks (2c, 2c+1) share 32 bytes, low nibble / high nibble
        L = L.reshape(-1, 4, 2, 32)
        qs = (L[:, :, 0] | (L[:, :, 1] << 4)).reshape(-1, 128)
        return np.ascontiguousarray(np.concatenate([head, qs], axis=1))

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        d, dm = self._decode_params(raw)
        qs = raw[:, 16:144].reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
        q = (qs & 0xF).reshape(n, 8, 32).astype(np.float32)
        return _affine_inplace(q, d, dm).reshape(n, 256)


class Q5K(_Q45K):
    name = "q5_k"
    description = "GGML 5-bit K-quant: 256-value super-blocks, 8 sub-blocks with 6-bit scale and min"
    nmax = 31
    search = staticmethod(search_q5_k)

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        head, L = self._codes(blocks)
        # qh byte j, bit s: bit 4 of L[sub-block s][j]; qs as in Q4_K with the low nibbles
        hi = (L >> 4).astype(np.uint8)
        qh = np.zeros((L.shape[0], 32), np.uint8)
        for s in range(8):  # 8 fixed bit positions, not blocks
            qh |= hi[:, s] << s
        lo = (L & 0xF).reshape(-1, 4, 2, 32)
        qs = (lo[:, :, 0] | (lo[:, :, 1] << 4)).reshape(-1, 128)
        return np.ascontiguousarray(np.concatenate([head, qh, qs], axis=1))

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        d, dm = self._decode_params(raw)
        qh = raw[:, 16:48].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)
        ql = raw[:, 48:176].reshape(n, 4, 1, 32) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
        q = ((ql & 0xF).reshape(n, 8, 32) | ((qh & 1) << 4)).astype(np.float32)
        return _affine_inplace(q, d, dm).reshape(n, 256)


class Q2K(_KQuant):
    name = "q2_k"
    description = "GGML 2-bit K-quant: 256-value super-blocks, 16 sub-blocks with 4-bit scale and min"

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        n = blocks.shape[0]
        sub = blocks.reshape(-1, 16)
        scales, mins, L0 = search_q2_k(sub)
        scales, mins = scales.reshape(n, 16), mins.reshape(n, 16)
        max_scale = _positive_max(scales)[:, None]
        max_min = _positive_max(mins)[:, None]
        with np.errstate(divide="ignore"):
            iscale = np.where(max_scale > 0, _F(15.0) / max_scale, _F(0.0)).astype(np.float32)
            imin = np.where(max_min > 0, _F(15.0) / max_min, _F(0.0)).astype(np.float32)
        # C stores the int into a uint8 (wraps), then ORs the min nibble (l << 4, also wrapped);
        # with max == 0 the nibble stays 0, which iscale = 0 reproduces.
        sbytes = (nearest_int(iscale * scales) & 0xFF) | ((nearest_int(imin * mins) << 4) & 0xFF)
        sbytes = sbytes.astype(np.uint8)
        d16 = (max_scale[:, 0] / _F(15.0)).astype(np.float16)  # fp16(0) when max_scale == 0
        dmin16 = (max_min[:, 0] / _F(15.0)).astype(np.float16)
        d, dm = _affine_params(d16, dmin16, sbytes & 0xF, sbytes >> 4)
        L = _rederive(sub, d, dm, L0, 3).reshape(n, 2, 4, 32)
        # qs byte 32*h + l holds L[128h + 32k + l] at bits 2k, k = 0..3
        qs = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
        parts = [sbytes, qs.reshape(n, 64), _f16_bytes(d16), _f16_bytes(dmin16)]
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        s = raw[:, 0:16]
        d = fp16_from(raw[:, 80:82]) * (s & 0xF).astype(np.float32)
        dm = fp16_from(raw[:, 82:84]) * (s >> 4).astype(np.float32)
        qs = raw[:, 16:80].reshape(n, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
        q = (qs & 3).reshape(n, 16, 16).astype(np.float32)
        return _affine_inplace(q, d[:, :, None], dm[:, :, None]).reshape(n, 256)


for _cls in (Q2K, Q4K, Q5K):
    register(_cls())
