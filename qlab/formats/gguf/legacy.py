"""GGML's legacy 32-value block formats: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.

Byte-exact with llama.cpp's reference quantizers ``quantize_row_q{4_0,4_1,5_0,5_1,8_0}_ref`` and
dequantizers ``dequantize_row_*`` (``ggml/src/ggml-quants.c``); the tests check both against
llama.cpp's own bytes and against gguf-py (``gguf.quants``).

Every block of 32 values gets one float32 scale ``d`` (and for the ``_1`` types a minimum ``m``).
The quirks that decide the bits:

* GGML *stores* ``d`` rounded to fp16 but *quantizes* with ``id = 1.0f/d`` computed from the
  unrounded float32 ``d``; everything is float32 arithmetic in C's evaluation order (no FMA).
* Q4_0/Q5_0 use the *signed* value of largest magnitude (the first one on ties), so the code
  ``-8``/``-16`` hits it exactly: ``d = max / -8``. Codes are ``(int8_t)(x*id + 8.5f)``, a
  truncation that rounds half up, then ``MIN(15, .)`` (the opposite extreme would give 16).
* Q4_1/Q5_1 use ``(x - min)*id + 0.5f`` truncated; Q8_0 uses ``roundf`` (half away from zero).
* When ``1.0f/d`` overflows (d below ~2.9e-39), x*id is +-inf or NaN and x86's float->int
  conversion yields the "integer indefinite" 0x80000000, whose low byte 0 is the stored code; we
  reproduce that explicitly instead of relying on numpy's (platform-dependent) casts.

With an importance matrix (``encode(x, imatrix=w)``) Q4_0/Q5_0 and Q4_1/Q5_1 run llama.cpp's
``quantize_row_q*_impl`` instead: a weighted scale search per block (numba,
:mod:`._imx_kernels`) with weights ``w*sqrt(sigma2 + x^2)``, ``sigma2`` the mean square of the
*whole row*. Those codes come straight from the search (no ``8.5f`` truncation; an all-zero block
stores code 0). Q8_0 ignores the imatrix, as llama.cpp does.

Quantization works on chunks of blocks *transposed* to ``(32, n)``, so that per-block reductions
are elementwise maxima over 32 contiguous rows (much faster in numpy than reducing 32-long rows).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ._imx_kernels import legacy_imatrix
from .common import GGMLFormat, get_fp16, kernel_input, pack_nibbles, put_fp16, register, unpack_nibbles

__all__ = [
    "ChunkedGGML",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "absmax",
    "reciprocal",
]

_F32 = np.float32
_U8 = np.uint8
#: values per chunk (64k float32 = 256 KiB): a chunk and its temporaries stay in cache
CHUNK_VALUES = 1 << 16


class ChunkedGGML(GGMLFormat):
    """A GGML codec that works on cache-sized chunks of blocks (a loop over chunks, not blocks).

    Subclasses implement ``_quantize_chunk(x, out)`` -- ``x`` is float32 ``(block_size, n)``
    (one column per block) when ``transposed`` is true, else ``(n, block_size)``; ``out`` is the
    uint8 ``(n, type_size)`` block bytes to fill -- and ``_dequantize_chunk(raw, out)`` from uint8
    ``(n, type_size)`` into float32 ``(n, block_size)``.
    """

    transposed: ClassVar[bool] = True

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        n, bs = blocks.shape
        out = np.empty((n, self.type_size), _U8)
        step = max(1, CHUNK_VALUES // bs)
        for s in range(0, n, step):
            chunk = blocks[s : s + step]
            self._quantize_chunk(
                np.ascontiguousarray(chunk.T) if self.transposed else chunk, out[s : s + step]
            )
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n, bs = raw.shape[0], self._layout.block_size
        out = np.empty((n, bs), _F32)
        step = max(1, CHUNK_VALUES // bs)
        with np.errstate(invalid="ignore", over="ignore"):  # an fp16-inf scale gives inf/NaN, as in C
            for s in range(0, n, step):
                self._dequantize_chunk(raw[s : s + step], out[s : s + step])
        return out

    def _quantize_chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def _dequantize_chunk(self, raw: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError


# -- per-block statistics with the reference's exact semantics ------------------------------------
def reciprocal(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``id = d ? 1.0f/d : 0.0f`` in float32, plus a mask of blocks where ``1/d`` overflowed.

    Overflowed blocks get ``id = 0`` here; callers then store the codes x86 C produces for them.
    """
    with np.errstate(divide="ignore", over="ignore"):
        inv = _F32(1.0) / d
    overflow = np.isinf(inv)
    inv[overflow] = 0.0
    return inv, overflow & (d != 0)


def first_occurrence(xt: np.ndarray, cols: np.ndarray, target: np.ndarray, absolute: bool) -> np.ndarray:
    """For the blocks ``cols``, the first element equal to ``target`` (by magnitude if
    ``absolute``) -- C's ``if (v > max)`` scans keep the first of equal candidates, which
    matters for the sign of a tie (+a vs -a) or of a zero (+0.0 vs -0.0)."""
    sub = xt[:, cols]
    hit = (np.abs(sub) if absolute else sub) == target[cols]
    return sub[hit.argmax(axis=0), np.arange(cols.size)]


def signed_absmax(xt: np.ndarray) -> np.ndarray:
    """Q4_0/Q5_0's ``max``: the signed value of largest magnitude, the first one on a tie, and
    +0.0 for an all-zero block (the C loop's initial value is never replaced)."""
    mx, mn = xt.max(axis=0), xt.min(axis=0)
    neg_mn = -mn
    res = np.where(neg_mn > mx, mn, mx)
    tie = np.flatnonzero(neg_mn == mx)  # +a and -a (or an all-zero block): the first one wins
    if tie.size:
        res[tie] = first_occurrence(xt, tie, mx, absolute=True)
    res += _F32(0.0)  # -0.0 + 0.0 == +0.0: an all-zero block gives +0.0 whatever its signs
    return res


def min_max(xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_1/Q5_1's ``min``/``max``; a zero extremum keeps the sign of the block's first zero."""
    mn, mx = xt.min(axis=0), xt.max(axis=0)
    for v in (mn, mx):
        z = np.flatnonzero(v == 0)
        if z.size:
            v[z] = first_occurrence(xt, z, v, absolute=False)
    return mn, mx


def absmax(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """``amax = MAX(amax, fabsf(v))`` from 0.0f: max(max, -min), always a non-negative zero."""
    a = np.maximum(x.max(axis=axis), -x.min(axis=axis))
    a += _F32(0.0)
    return a


# -- packing -------------------------------------------------------------------------------------
def _pack_nibbles_t(q: np.ndarray) -> np.ndarray:
    """Codes ``(32, n)`` -> bytes ``(n, 16)``: byte j = code j | code j+16 << 4 (low 4 bits each);
    :func:`.common.pack_nibbles` for the transposed chunks."""
    return ((q[:16] & _U8(15)) | (q[16:] << _U8(4))).T


_BIT = (1 << np.arange(8, dtype=_U8)).reshape(1, 8, 1)


def _pack_high_bits(q: np.ndarray) -> np.ndarray:
    """Bit 4 of codes ``(32, n)`` -> ``qh`` ``(n, 4)``: bit j of the little-endian uint32 is code j's.
    (A weighted sum of 0/1 bits; ``np.packbits`` along axis 0 is ~20x slower.)"""
    h = (q >> _U8(4)).reshape(4, 8, -1)
    return (h * _BIT).sum(axis=1, dtype=_U8).T


def _clamp_top(q: np.ndarray, bits: int) -> None:
    """``MIN(2^bits - 1, q)`` in place for codes ``q <= 2^bits``: only ``2^bits`` itself (the value
    opposite the scale's sign, ``x*id = 2^(bits-1)``) steps down by one. Cheaper than np.minimum."""
    q -= q >> _U8(bits)


def _imatrix_bytes(fmt: ChunkedGGML, rows: np.ndarray, w: np.ndarray, bits: int, affine: bool) -> np.ndarray:
    """The imatrix path of the 32-value types: ``d`` fp16 [, ``m`` fp16], [``qh``], ``qs``; codes
    ``0 .. 2^bits - 1`` (``make_qkx3_quants``' nmax for the affine types, ``l + nmax`` with
    ``nmax = 2^(bits-1)`` for the symmetric ones)."""
    nmax = (1 << bits) - 1 if affine else 1 << (bits - 1)
    L, d, m = legacy_imatrix(kernel_input(rows.reshape(-1, 32)), kernel_input(w), rows.shape[1], nmax, affine)
    out = np.empty((L.shape[0], fmt.type_size), _U8)
    put_fp16(out, 0, d)
    if affine:
        put_fp16(out, 2, m)
    if bits == 5:  # Q5_0 / Q5_1: bit 4 of code j is bit j of the uint32 qh
        out[:, 2 + 2 * affine : 6 + 2 * affine] = np.packbits(L >> _U8(4), axis=1, bitorder="little")
    out[:, -16:] = pack_nibbles(L, 32)
    return out


def _unpack_codes(qs: np.ndarray, qh: np.ndarray | None) -> np.ndarray:
    """Codes ``(n, 32)`` uint8 from ``qs`` ``(n, 16)`` nibbles and, for 5-bit types, ``qh``."""
    c = unpack_nibbles(qs, 32)
    if qh is not None:
        c |= np.unpackbits(qh, axis=1, bitorder="little") << _U8(4)
    return c


# -- the formats ---------------------------------------------------------------------------------
class _Symmetric(ChunkedGGML):
    """Q4_0 / Q5_0: ``d = max / -2^(b-1)``, codes ``MIN(2^b - 1, (int8_t)(x*id + 2^(b-1) + 0.5f))``,
    values ``(code - 2^(b-1)) * d``."""

    bits: ClassVar[int]

    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``quantize_row_q4_0_impl`` / ``q5_0``: ``make_qx_quants(32, 2^(b-1), rmse_type=1)``."""
        return _imatrix_bytes(self, rows, w, self.bits, False)

    def _quantize_chunk(self, xt: np.ndarray, out: np.ndarray) -> None:
        half = 1 << (self.bits - 1)
        d = signed_absmax(xt) / _F32(-half)
        inv, overflow = reciprocal(d)
        v = xt * inv
        v += _F32(half + 0.5)  # in [0.4999.., 2*half + 0.5]: the C truncation is a floor
        q = v.astype(_U8)
        _clamp_top(q, self.bits)
        if overflow.any():
            q[:, overflow] = 0
        put_fp16(out, 0, d)
        if self.bits == 5:
            out[:, 2:6] = _pack_high_bits(q)
        out[:, -16:] = _pack_nibbles_t(q)

    def _dequantize_chunk(self, raw: np.ndarray, out: np.ndarray) -> None:
        c = _unpack_codes(raw[:, -16:], raw[:, 2:6] if self.bits == 5 else None)
        c -= _U8(1 << (self.bits - 1))  # wraps to the two's complement of the signed code
        np.multiply(c.view(np.int8), get_fp16(raw, 0), out=out, dtype=_F32)


class Q4_0(_Symmetric):
    name = "q4_0"
    bits = 4
    description = "4-bit blocks of 32 with one fp16 scale (llama.cpp Q4_0)"


class Q5_0(_Symmetric):
    name = "q5_0"
    bits = 5
    description = "5-bit blocks of 32 with one fp16 scale (llama.cpp Q5_0)"


class _Affine(ChunkedGGML):
    """Q4_1 / Q5_1: ``d = (max - min) / (2^b - 1)``, ``m = min``, codes ``(x - min)*id + 0.5f``
    truncated (Q4_1 clamps with ``MIN(15, .)``; Q5_1 has no clamp and cannot exceed 31), values
    ``code*d + m`` as two float32 roundings (no FMA)."""

    bits: ClassVar[int]

    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``quantize_row_q4_1_impl`` / ``q5_1``: ``make_qkx3_quants(32, 2^b - 1, -0.9f, 0.05f, 36)``."""
        return _imatrix_bytes(self, rows, w, self.bits, True)

    def _quantize_chunk(self, xt: np.ndarray, out: np.ndarray) -> None:
        top = (1 << self.bits) - 1
        mn, mx = min_max(xt)
        with np.errstate(over="ignore"):  # max - min may overflow to inf: then d = inf, id = 0
            d = (mx - mn) / _F32(top)
            v = xt - mn
        inv, overflow = reciprocal(d)
        overflow |= np.isinf(d)  # (x - min) * 0 is NaN where x - min overflowed: code 0 in C
        if overflow.any():
            v[:, overflow] = 0.0
        v *= inv
        v += _F32(0.5)
        q = v.astype(_U8)
        if self.bits == 4:
            _clamp_top(q, 4)  # (never binds: (x - min)*id <= 15.00001; kept as in the reference)
        put_fp16(out, 0, d)
        put_fp16(out, 2, mn)
        if self.bits == 5:
            out[:, 4:8] = _pack_high_bits(q)
        out[:, -16:] = _pack_nibbles_t(q)

    def _dequantize_chunk(self, raw: np.ndarray, out: np.ndarray) -> None:
        c = _unpack_codes(raw[:, -16:], raw[:, 4:8] if self.bits == 5 else None)
        np.multiply(c, get_fp16(raw, 0), out=out, dtype=_F32)
        out += get_fp16(raw, 2)


class Q4_1(_Affine):
    name = "q4_1"
    bits = 4
    description = "4-bit blocks of 32 with an fp16 scale and an fp16 minimum (llama.cpp Q4_1)"


class Q5_1(_Affine):
    name = "q5_1"
    bits = 5
    description = "5-bit blocks of 32 with an fp16 scale and an fp16 minimum (llama.cpp Q5_1)"


def round_half_away(v: np.ndarray) -> np.ndarray:
    """C's ``roundf`` in float32, in place: ``trunc(2v) - trunc(v)``.

    With ``v = k + f`` (``k = trunc(v)``, ``|f| < 1``, same sign), ``2v`` is exact and
    ``trunc(2v) = 2k + trunc(2f)``, so the result is ``k + trunc(2f)``: ``k +- 1`` exactly when
    ``|f| >= 0.5``. (``floor(|v| + 0.5)`` would be wrong for 0.49999997, where the sum rounds to 1.)
    """
    t = np.trunc(v)
    v += v
    np.trunc(v, out=v)
    v -= t
    return v


class Q8_0(ChunkedGGML):
    """``d = amax / 127``, codes ``roundf(x*id)`` as int8, values ``code * d``."""

    name = "q8_0"
    description = "8-bit blocks of 32 with one fp16 scale (llama.cpp Q8_0)"

    def _quantize_chunk(self, xt: np.ndarray, out: np.ndarray) -> None:
        d = absmax(xt) / _F32(127)
        inv, overflow = reciprocal(d)
        q = round_half_away(xt * inv).astype(np.int8)  # |x*id| <= 127 (+ rounding): in range
        if overflow.any():
            q[:, overflow] = 0
        put_fp16(out, 0, d)
        out[:, 2:] = q.view(_U8).T

    def _dequantize_chunk(self, raw: np.ndarray, out: np.ndarray) -> None:
        np.multiply(raw[:, 2:].view(np.int8), get_fp16(raw, 0), out=out, dtype=_F32)


for _cls in (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0):
    register(_cls())
