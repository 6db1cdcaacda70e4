"""IQ4_NL and IQ4_XS: llama.cpp's non-linear 4-bit formats.

Both map each value to one of 16 fixed levels (``kvalues_iq4nl`` = -127 ... 113, denser near
zero, a fit to the normal distribution) times a block scale. They are byte-exact with
``quantize_iq4_nl`` / ``quantize_iq4_xs`` -> ``quantize_row_iq4_nl_impl`` in
ggml/src/ggml-quants.c, i.e. what ``llama_model_quantize`` produces without an importance matrix
(``quant_weights == NULL``: weights ``x**2``; ``ntry = 7`` trial scales ``(t - 127) / max``), and
with an importance matrix (``encode(x, imatrix=w)``) what ``ggml_quantize_chunk`` produces with
``quant_weights``: weights ``w[i] * sqrtf(sigma2 + x[i]**2)``, ``sigma2 = 2*sum(x**2)/size`` over the
32-value block (IQ4_NL) or the 256-value super-block (IQ4_XS); everything else is the same search.
The scale search is a numba kernel below (float32 in C's evaluation order, see
:mod:`._qx_kernels` for the shared rules); packing and decoding are numpy and decode
equals ``dequantize_row_iq4_nl`` / ``dequantize_row_iq4_xs`` (gguf-py) bit for bit.

IQ4_NL block (18 bytes / 32 values): ``d`` fp16, ``qs[16]`` (value ``j`` in the low nibble of
byte ``j``, value ``j + 16`` in the high nibble). Value = ``d * kvalues[q]``.

IQ4_XS block (136 bytes / 256 values): ``d`` fp16, ``scales_h`` uint16 (2 high bits of each of
the 8 block scales), ``scales_l[4]`` (their low nibbles), ``qs[128]`` (IQ4_NL nibble order per
32 values). Value = ``d * (scale6 - 32) * kvalues[q]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._qx_kernels import EPS, fp32_to_fp16_bits, kernel_input, nearest_int, signed_absmax
from .common import (
    GGMLFormat,
    get_fp16,
    pack_nibbles,
    put_fp16,
    register,
    scale_rows,
    signed_scale6,
    unpack_nibbles,
)

_F = np.float32
#: the non-linear code book ``kvalues_iq4nl`` (ggml-common.h)
KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.int8)
_KV = KVALUES_IQ4NL.astype(np.float32)


# -- the scale search (numba), byte-exact with quantize_row_iq4_nl_impl ---------------------------
def _interval_table() -> np.ndarray:
    """``_TAB[floor(x) + 127]`` = the ``mu`` of ``best_index_int8``'s bisection (first value > x)
    for -127 <= x < 113; exact because the code-book values are integers."""
    return np.searchsorted(_KV, np.arange(-127, 113, dtype=np.float32), side="right").astype(np.int64)


_TAB = _interval_table()


@njit(cache=True, inline="always", error_model="numpy")
def best_index_iq4(x):
    """``best_index_int8(16, kvalues_iq4nl, x)``: nearest code-book entry, ties to the upper one
    (the C test is ``x - v[mu-1] < v[mu] - x``, both sides rounded in float32, replayed as is).

    The bisection is replaced by a table lookup on ``floor(x)`` (same interval, no unpredictable
    branches).
    """
    if not (x > _KV[0] and x < _KV[15]):  # ends, and NaN (C's bisection then returns 15)
        return 0 if x <= _KV[0] else 15
    hi = _TAB[np.int64(np.floor(x)) + 127]
    return hi - np.int64(x - _KV[hi - 1] < _KV[hi] - x)


@njit(cache=True, inline="always", error_model="numpy")
def level_iq4(x):
    """``kvalues_iq4nl[best_index_int8(16, kvalues_iq4nl, x)]`` as a float, branch-free: the
    bracketing levels are found with compare/selects over the (constant) code book, so the
    trial-scale lanes below vectorise; the tie rule is the same float32 test as in C. A NaN
    (from x**2 overflowing in the sums) fails every comparison and gives v[15], as in C."""
    lo = _KV[0]
    hi = _KV[15]
    for k in range(1, 15):
        lo = _KV[k] if x >= _KV[k] else lo
        hi = _KV[15 - k] if x < _KV[15 - k] else hi
    q = lo if x - lo < hi - x else hi
    q = _KV[0] if x <= _KV[0] else q
    return _KV[15] if x >= _KV[15] else q


@njit(cache=True, error_model="numpy")
def _iq4_block_scale(x, b, off, weight, ids, sqx, sq2):
    """Scale search of one 32-value block (``quantize_row_iq4_nl_impl``, ntry 7) with ``weight``.

    Lane 0 is the first guess ``1/(-max/-127)``, lanes 1..15 the trials ``(t - 127)/max`` for
    t = -7..7; each lane sums in C's order, then the sequential "strictly better" choice is replayed.
    """
    amax, mx = signed_absmax(x[b, off : off + 32])
    if amax < EPS:
        return _F(0.0)
    ids[0] = _F(1.0) / (-mx / _KV[0])
    for t in range(1, 16):
        ids[t] = _F(t - 8 - 127) / mx
    for t in range(16):
        sqx[t] = _F(0.0)
        sq2[t] = _F(0.0)
    for j in range(32):
        xj = x[b, off + j]
        w = weight[j]
        for t in range(16):
            q = level_iq4(ids[t] * xj)
            wq = w * q
            sqx[t] += wq * xj  # w*q*x == (w*q)*x
            sq2[t] += wq * q
    d = sqx[0] / sq2[0] if sq2[0] > 0 else _F(0.0)
    best = d * sqx[0]
    for t in range(1, 16):
        if sq2[t] > 0 and sqx[t] * sqx[t] > best * sq2[t]:
            d = sqx[t] / sq2[t]
            best = d * sqx[t]
    return d


@njit(cache=True, error_model="numpy")
def iq4_codes(x, qw, has_qw, ncols):
    """IQ4_NL (x of shape (n, 32)) or IQ4_XS (x of shape (n, 256)): code indices 0..15,
    6-bit block scales 0..63 (IQ4_XS only) and fp16 d bits. ``qw``: the imatrix ``(ncols,)``
    of rows of ``ncols`` values (``has_qw``), else weights ``x**2``."""
    n, size = x.shape
    nb = size // 32
    per_row = ncols // size
    weight = np.empty(32, np.float32)
    L = np.empty((n, size), np.uint8)
    sc6 = np.zeros((n, nb), np.uint8)
    dbits = np.zeros(n, np.uint16)
    scales = np.empty(nb, np.float32)
    ids = np.empty(16, np.float32)
    sqx = np.empty(16, np.float32)
    sq2 = np.empty(16, np.float32)
    for b in range(n):
        sigma2 = _F(0.0)
        if has_qw:  # sum in order, then *= 2.f/size (an exact power of two)
            for j in range(size):
                sigma2 += x[b, j] * x[b, j]
            sigma2 *= _F(2.0) / _F(size)
        col = (b % per_row) * size
        for ib in range(nb):
            for j in range(32):
                xj = x[b, 32 * ib + j]
                if has_qw:
                    weight[j] = qw[col + 32 * ib + j] * np.sqrt(sigma2 + xj * xj)
                else:
                    weight[j] = xj * xj
            scales[ib] = _iq4_block_scale(x, b, 32 * ib, weight, ids, sqx, sq2)
        _, max_scale = signed_absmax(scales)
        if nb > 1:
            # IQ4_XS: 6-bit block scales relative to the unrounded d; an all-zero super-block
            # gives d = -0.0 (fp16 0x8000) and every block scale code 32
            d = -max_scale / _F(32.0)
            dbits[b] = fp32_to_fp16_bits(d)
            idv = _F(1.0) / d if d != 0 else _F(0.0)
            for ib in range(nb):
                q = min(max(nearest_int(idv * scales[ib]), -32), 31)
                dl = d * _F(q)
                idl = _F(1.0) / dl if dl != 0 else _F(0.0)
                for j in range(32):
                    L[b, 32 * ib + j] = best_index_iq4(idl * x[b, 32 * ib + j])
                sc6[b, ib] = q + 32
        else:
            # IQ4_NL: d is the block scale; codes use its unrounded inverse (0 -> all index 8)
            s = scales[0]
            dbits[b] = fp32_to_fp16_bits(s)
            idv = _F(1.0) / s if s != 0 else _F(0.0)
            for j in range(32):
                L[b, j] = best_index_iq4(idv * x[b, j])
    return L, sc6, dbits


# -- formats (numpy packing / decoding) ---------------------------------------------------------
def _weights_arg(qw: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """``(qw, has_qw)`` for :func:`iq4_codes` (one numba specialisation for both cases); the
    row-length argument follows."""
    return (np.ones(1, np.float32), False) if qw is None else (kernel_input(qw), True)


class _IQ4(GGMLFormat):
    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        bs = self._layout.block_size
        return self.quantize_blocks(rows.reshape(-1, bs), w, rows.shape[1])  # type: ignore[call-arg]


class IQ4_NL(_IQ4):
    name = "iq4_nl"
    description = "llama.cpp non-linear 4-bit: 32-value blocks on a fixed 16-level grid, fp16 scale"

    def quantize_blocks(self, blocks: np.ndarray, qw: np.ndarray | None = None, ncols: int = 32) -> np.ndarray:
        L, _, dbits = iq4_codes(kernel_input(blocks), *_weights_arg(qw), ncols)
        out = np.empty((L.shape[0], self.type_size), np.uint8)
        put_fp16(out, 0, dbits.view(np.float16))  # the kernel rounded d to fp16 (GGML's way)
        out[:, 2:18] = pack_nibbles(L, 32)
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        return get_fp16(raw, 0) * _KV[unpack_nibbles(raw[:, 2:18], 32)]


class IQ4_XS(_IQ4):
    name = "iq4_xs"
    description = "llama.cpp non-linear 4-bit: 256-value super-blocks of 8x32 with 6-bit scales"

    def quantize_blocks(self, blocks: np.ndarray, qw: np.ndarray | None = None, ncols: int = 256) -> np.ndarray:
        L, sc6, dbits = iq4_codes(kernel_input(blocks), *_weights_arg(qw), ncols)
        n = L.shape[0]
        out = np.empty((n, self.type_size), np.uint8)
        put_fp16(out, 0, dbits.view(np.float16))
        # scales_h: 2 high bits of scale ib at bits 2*ib of a little-endian uint16
        h = (sc6 >> 4).astype(np.uint16) << (2 * np.arange(8, dtype=np.uint16))
        out[:, 2:4] = np.bitwise_or.reduce(h, axis=1).astype("<u2").view(np.uint8).reshape(n, 2)
        out[:, 4:8] = pack_nibbles(sc6, 2)  # scales_l: scale 2j in the low nibble of byte j
        out[:, 8:136] = pack_nibbles(L, 32)
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        sh = np.ascontiguousarray(raw[:, 2:4]).view("<u2")  # (n, 1)
        hi = ((sh >> (2 * np.arange(8, dtype=np.uint16))) & 3).astype(np.uint8)  # (n, 8)
        dl = get_fp16(raw, 0) * signed_scale6(unpack_nibbles(raw[:, 4:8], 2), hi)  # d*scale first, as in C
        return scale_rows(dl, _KV[unpack_nibbles(raw[:, 8:136], 32)])


register(IQ4_NL())
register(IQ4_XS())
