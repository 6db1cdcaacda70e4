"""GGML type-1 (affine: scale and min) K-quants Q2_K, Q4_K and Q5_K: super-blocks of 256 values with an fp16 scale ``d`` and an
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

With an importance matrix (``encode(x, imatrix=w)``) stages 1 and 2 are those of
``quantize_row_q{2,4,5}_K_impl`` instead (:mod:`._imx_kernels`: ``make_qkx3_quants`` with the
weights ``w*sqrt(sigma2 + x^2)``, then ``make_qp_quants`` for the scales and mins, which yields the
integer codes and ``d``/``dmin`` directly); stage 3 and the packing are shared. Q4_K's imatrix path
has no ``MIN(63, .)`` on the codes (Q5_K's has): the bytes are decoded back with
``get_scale_min_k4`` before stage 3, as the C does, so any overflowing bits land where they do in C.

Decoding is ``y = d*sc*q - dmin*m`` in float32, the same expression (and rounding) as gguf-py's
``dequantize`` and llama.cpp's ``dequantize_row_q*_K``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..base import Encoded
from ._imx_kernels import kquant1_imatrix
from ._kq_kernels import search_q2_k, search_q4_k, search_q5_k
from ._qkx_lanes import NL
from .common import (
    GGMLFormat,
    get_fp16,
    kernel_input,
    pack_2bit,
    pack_bits,
    pack_nibbles,
    put_fp16,
    register,
    unpack_2bit,
    unpack_bits,
    unpack_nibbles,
)

__all__ = ["Q2K", "Q4K", "Q5K", "nearest_int"]

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


def _quantize_scales(scales: np.ndarray, mins: np.ndarray, top: int):
    """Stage 2 on ``(n, k)`` sub-block scales/mins against their positive maxima: the integer
    codes ``nearest_int(top/max * v)`` (int32; the caller applies C's uint8 wrap and clamp) and
    the fp16 ``d = max/top``, ``dmin`` (float16 ``(n,)``; 0 where the max is 0)."""
    codes, d16 = [], []
    for v in (scales, mins):
        mx = _positive_max(v)[:, None]
        with np.errstate(divide="ignore"):
            inv = np.where(mx > 0, _F(top) / mx, _F(0.0)).astype(np.float32)
        codes.append(nearest_int(inv * v))
        # GGML_FP32_TO_FP16 rounds to nearest even (subnormals and overflow to inf), as numpy
        d16.append((mx[:, 0] / _F(top)).astype(np.float16))
    return codes, d16


def _affine_params(d: np.ndarray, dmin: np.ndarray, sc: np.ndarray, m: np.ndarray):
    """Per-sub-block float32 ``d*sc`` and ``dmin*m`` as ``(n, k)``, from one fp16 ``d``/``dmin``
    per block (float16 ``(n,)`` or their float32 ``(n, 1)``) and integer ``sc``/``m`` ``(n, k)``."""
    d, dmin = d.astype(np.float32).reshape(-1, 1), dmin.astype(np.float32).reshape(-1, 1)
    return d * sc.astype(np.float32), dmin * m.astype(np.float32)


def _rederive(x: np.ndarray, d: np.ndarray, dm: np.ndarray, L0: np.ndarray, nmax: int) -> np.ndarray:
    """Stage 3: ``L = clamp(nearest_int((x + dm)/d), 0, nmax)`` per sub-block (rows of ``x``);
    where ``d == 0`` keep the search codes ``L0``. ``d``/``dm`` are float32 ``(n, k)``."""
    d, dm = d.reshape(-1, 1), dm.reshape(-1, 1)
    zero = d == 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = nearest_int((x + dm) / np.where(zero, _F(1.0), d))
    q = np.clip(q, 0, nmax).astype(np.uint8)
    return np.where(zero, L0, q)


def _affine_decode(q: np.ndarray, d: np.ndarray, dm: np.ndarray) -> np.ndarray:
    """``y = d*q - dm`` in float32 per sub-block (the same two roundings as C and gguf-py):
    codes ``(n, 256)``, steps/offsets ``(n, k)``."""
    n, k = d.shape
    y = q.reshape(n, k, 256 // k).astype(np.float32)
    np.multiply(y, d[:, :, None], out=y)
    np.subtract(y, dm[:, :, None], out=y)
    return y.reshape(n, 256)


def _scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``get_scale_min_k4`` for all 8 sub-blocks of the 12 scale bytes ``s`` ``(n, 12)``."""
    lo, mid, hi = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([lo & 63, (hi & 0xF) | ((lo >> 6) << 4)], axis=1)
    m = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=1)
    return sc, m


class _KQuant(GGMLFormat):
    """Finite values so large that ``max_scale/63`` exceeds fp16 (|x| from ~1e6 up) give an
    infinite ``d``/``dmin``, exactly as llama.cpp writes it; numpy's overflow warnings for that
    reference behaviour are silenced. (NaN/Inf input is rejected by ``GGMLFormat``.)"""

    def _encode(self, x: np.ndarray, **opts: Any) -> Encoded:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return super()._encode(x, **opts)


class _Q45K(_KQuant):
    """Q4_K and Q5_K share everything but the code width (Q5_K adds the ``qh`` bit plane of bit 4)
    and the search parameters. Block: ``d``, ``dmin``, ``scales[12]``, [``qh[32]``], ``qs[128]``
    (sub-blocks 2c and 2c+1 share 32 bytes of low / high nibbles)."""

    bits: int  # code width
    search: Callable  # the make_qkx2_quants kernel with this type's constants

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        n = blocks.shape[0]
        sub = blocks.reshape(-1, 32)
        scales, mins, L0 = self.search(sub)
        (ls, lm), (d16, dmin16) = _quantize_scales(scales.reshape(n, 8), mins.reshape(n, 8), 63)
        # C: uint8_t ls = nearest_int(...); ls = MIN(63, ls);  (the uint8 cast wraps first)
        ls = np.minimum(ls & 0xFF, 63).astype(np.uint8)
        lm = np.minimum(lm & 0xFF, 63).astype(np.uint8)
        return self._finish(sub, ls, lm, d16, dmin16, L0)

    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        x = kernel_input(rows.reshape(-1, 256))
        L0, ls, lm, d, dmin = kquant1_imatrix(x, kernel_input(w), rows.shape[1], 32, (1 << self.bits) - 1, 63, NL)
        if self.bits == 5:  # quantize_row_q5_K_impl clamps with MIN(63, .), q4_K's does not
            ls, lm = np.minimum(ls, 63), np.minimum(lm, 63)
        d16, dmin16 = d.astype(np.float16), dmin.astype(np.float16)  # GGML_FP32_TO_FP16
        return self._finish(x.reshape(-1, 32), ls, lm, d16, dmin16, L0.reshape(-1, 32))

    def _finish(self, sub, ls, lm, d16, dmin16, L0) -> np.ndarray:
        """Pack the 6-bit scales/mins ``(n, 8)`` uint8 and fp16 ``d``/``dmin``, re-derive the codes
        from what was stored (stage 3) and pack them."""
        n = ls.shape[0]
        out = np.empty((n, self.type_size), np.uint8)
        put_fp16(out, 0, d16)
        put_fp16(out, 2, dmin16)
        # the inverse of get_scale_min_k4: bytes 0-3 hold sc[0:4] plus the top 2 bits of sc[4:8];
        # bytes 4-7 the same for m; bytes 8-11 the low nibbles of sc[4:8] | m[4:8] << 4 (uint8
        # shifts wrap like C's stores into uint8_t)
        out[:, 4:8] = ls[:, :4] | ((ls[:, 4:] >> 4) << 6)
        out[:, 8:12] = lm[:, :4] | ((lm[:, 4:] >> 4) << 6)
        out[:, 12:16] = (ls[:, 4:] & 0xF) | ((lm[:, 4:] & 0xF) << 4)
        d, dm = _affine_params(d16, dmin16, *_scale_min_k4(out[:, 4:16]))
        L = _rederive(sub, d, dm, L0, (1 << self.bits) - 1).reshape(n, 256)
        if self.bits == 5:
            out[:, 16:48] = pack_bits(L >> 4)
        out[:, -128:] = pack_nibbles(L, 64)
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        d, dm = _affine_params(get_fp16(raw, 0), get_fp16(raw, 2), *_scale_min_k4(raw[:, 4:16]))
        q = unpack_nibbles(raw[:, -128:], 64)
        if self.bits == 5:
            q |= unpack_bits(raw[:, 16:48]) << 4
        return _affine_decode(q, d, dm)


class Q4K(_Q45K):
    name = "q4_k"
    description = "GGML 4-bit K-quant: 256-value super-blocks, 8 sub-blocks with 6-bit scale and min"
    bits = 4
    search = staticmethod(search_q4_k)


class Q5K(_Q45K):
    name = "q5_k"
    description = "GGML 5-bit K-quant: 256-value super-blocks, 8 sub-blocks with 6-bit scale and min"
    bits = 5
    search = staticmethod(search_q5_k)


class Q2K(_KQuant):
    """Block: ``scales[16]`` (4-bit scale | 4-bit min << 4), ``qs[64]`` (2-bit groups), ``d``, ``dmin``."""

    name = "q2_k"
    description = "GGML 2-bit K-quant: 256-value super-blocks, 16 sub-blocks with 4-bit scale and min"

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        n = blocks.shape[0]
        sub = blocks.reshape(-1, 16)
        scales, mins, L0 = search_q2_k(sub)
        (ls, lm), (d16, dmin16) = _quantize_scales(scales.reshape(n, 16), mins.reshape(n, 16), 15)
        # C stores the int into a uint8 (wraps), then ORs the min nibble (l << 4, also wrapped);
        # with max == 0 the nibble stays 0, which a zero inverse reproduces.
        sbytes = ((ls & 0xFF) | ((lm << 4) & 0xFF)).astype(np.uint8)
        return self._finish(sub, sbytes, d16, dmin16, L0)

    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``quantize_row_q2_K_impl``: ``make_qkx3_quants(16, 3)`` with ``sigma2 = sum_x2/256``
        (not 2*: unlike Q3_K..Q5_K), ``make_qp_quants(16, 15)`` for scales and mins."""
        x = kernel_input(rows.reshape(-1, 256))
        L0, ls, lm, d, dmin = kquant1_imatrix(x, kernel_input(w), rows.shape[1], 16, 3, 15, NL)
        sbytes = ls | (lm << 4)  # uint8: Ls[j] | (Lm[j] << 4) stored into a uint8_t
        return self._finish(x.reshape(-1, 16), sbytes, d.astype(np.float16), dmin.astype(np.float16), L0.reshape(-1, 16))

    def _finish(self, sub, sbytes, d16, dmin16, L0) -> np.ndarray:
        n = sbytes.shape[0]
        d, dm = _affine_params(d16, dmin16, sbytes & 0xF, sbytes >> 4)
        L = _rederive(sub, d, dm, L0, 3).reshape(n, 256)
        out = np.empty((n, self.type_size), np.uint8)
        out[:, 0:16] = sbytes
        out[:, 16:80] = pack_2bit(L)
        put_fp16(out, 80, d16)
        put_fp16(out, 82, dmin16)
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        s = raw[:, 0:16]
        d, dm = _affine_params(get_fp16(raw, 80), get_fp16(raw, 82), s & 0xF, s >> 4)
        return _affine_decode(unpack_2bit(raw[:, 16:80]), d, dm)


for _cls in (Q2K, Q4K, Q5K):
    register(_cls())
