"""IQ1_S and IQ1_M: ternary (-1, 0, +1) 8-vectors from a 2048-entry grid, shifted by +-1/8.

Encode is byte-exact with ``quantize_row_iq1_s_impl`` / ``quantize_row_iq1_m_impl``
(ggml/src/ggml-quants.c; IQ1_S requires ``quant_weights``); decode equals gguf-py's
``dequantize`` bit for bit.

Each block's levels come from an exact search: values sorted, every split of the sorted block
into three groups (-1, 0, +1) scored with prefix sums of ``w*x`` and ``w``, for the level sets
``{-1, 0, 1} + delta`` and ``- delta`` (``delta`` = 0.125); the best split is then snapped to the
grid (or the best of its listed neighbours, scored with the shifted levels).

IQ1_S block (50 bytes / 256 values): ``d`` fp16; ``qs[32]`` low 8 bits of the 11-bit grid
indices; ``qh[8]`` uint16 per 32 values: 4 x 3 high index bits, a 3-bit scale ``s`` at bits
12..14 and the delta sign at bit 15. Value = ``d * (2s + 1) * (grid + delta)``.

IQ1_M block (56 bytes): ``qs[32]``; ``qh[16]`` per 16 values: two 3-bit high index bits + a
delta-sign bit each (bits 3 and 7); ``scales`` 4 uint16: sixteen 3-bit scales in the low 12 bits,
the fp16 ``d`` spread over their top nibbles.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._qx_kernels import fp32_to_fp16_bits
from .common import get_fp16, register
from .iq_grids import decoder_grid, quantizer_grid
from .iq_lattice import FLT_MAX, QK_K, IQFormat, grid_index, scale_code, super_block_sigma2, weights_arg

_F = np.float32
DELTA = np.float32(0.125)  # IQ1S_DELTA, IQ1M_DELTA
_XP = np.array([-1 + 0.125, 0.125, 1 + 0.125], np.float32)  # x_p: levels + delta
_XM = np.array([-1 - 0.125, -0.125, 1 - 0.125], np.float32)  # x_m: levels - delta


@njit(cache=True, inline="always", error_model="numpy")
def _neighbour2(neigh, off, grid, x, b, o, weight, wo, scale, xx, L, lo):
    """``iq1_find_best_neighbour2``: the listed neighbour with the smallest
    ``sum(w*(scale*xx[level] - x)**2)`` (first on ties). C's fallback scan over the whole grid
    (reached only when every score overflows) reads past the block and is not replayed: this
    then keeps the first neighbour."""
    best = FLT_MAX
    gi = np.int64(neigh[off + 1])
    for j in range(1, np.int64(neigh[off]) + 1):
        g = np.int64(neigh[off + j])
        d2 = _F(0.0)
        for i in range(8):
            q = xx[(grid[g, i] - 1) // 2]
            diff = scale * q - x[b, o + i]
            d2 += weight[wo + i] * diff * diff
        if d2 < best:
            best = d2
            gi = g
    for i in range(8):
        L[lo + i] = (grid[gi, i] - 1) // 2
    return gi


@njit(cache=True, inline="always", error_model="numpy")
def _snap(x, b, off, bs, weight, L, scale, xx0, xx1, grid, kmap, neigh, index):
    """Grid indices of the block's 8-groups (``xx0`` levels for the first, ``xx1`` for the rest)
    and the scale refitted when one was off the grid (``sumqx > 0 && sumq2 > 0``)."""
    all_on = True
    for k in range(bs // 8):
        xx = xx0 if k == 0 else xx1
        gi = grid_index(L, 8 * k, 8, 2, kmap)
        if gi < 0:
            all_on = False
            gi = _neighbour2(neigh, -gi - 1, grid, x, b, off + 8 * k, weight, 8 * k, scale, xx, L, 8 * k)
        index[k] = gi
    if not all_on:
        sumqx = _F(0.0)
        sumq2 = _F(0.0)
        for k in range(bs // 8):
            xx = xx0 if k == 0 else xx1
            for j in range(8):
                w = weight[8 * k + j]
                q = xx[(grid[index[k], j] - 1) // 2]
                sumqx += w * q * x[b, off + 8 * k + j]
                sumq2 += w * q * q
        if sumqx > 0 and sumq2 > 0:
            scale = sumqx / sumq2
    return scale


@njit(cache=True, error_model="numpy")
def _weights(x, qw, has_qw, b, off, bs, sigma2, weight):
    for i in range(bs):
        xi = x[b, off + i]
        weight[i] = qw[b, off + i] * np.sqrt(sigma2 + xi * xi) if has_qw else xi * xi


@njit(cache=True, error_model="numpy")
def iq1s_kernel(x, qw, grid, kmap, neigh):
    """IQ1_S bytes for ``x`` ``(n, 256)`` (an imatrix is required: ``qw`` ``(n, 256)``)."""
    n = x.shape[0]
    out = np.zeros((n, 50), np.uint8)
    weight = np.empty(32, np.float32)
    sumx = np.empty(33, np.float32)
    sumw = np.empty(33, np.float32)
    L = np.zeros(32, np.int64)
    index = np.zeros(4, np.int64)
    scales = np.zeros(8, np.float32)
    shifts = np.zeros(8, np.int64)
    qh = np.zeros(8, np.int64)
    for b in range(n):
        sigma2 = super_block_sigma2(x, b, True)
        max_scale = _F(0.0)
        for ib in range(8):
            off = 32 * ib
            qh[ib] = 0
            _weights(x, qw, True, b, off, 32, sigma2, weight)
            mx = abs(x[b, off])
            for i in range(1, 32):
                a = abs(x[b, off + i])
                mx = mx if mx > a else a
            if mx < _F(1e-12):  # GROUP_MAX_EPS_IQ1_S
                scales[ib] = 0
                shifts[ib] = 1
                continue
            # C's qsort of (value, index) pairs by value; a stable sort (ties keep index order)
            idx = np.argsort(x[b, off : off + 32], kind="mergesort")
            sumx[0] = 0
            sumw[0] = 0
            for j in range(32):
                i = idx[j]
                sumx[j + 1] = sumx[j] + weight[i] * x[b, off + i]
                sumw[j + 1] = sumw[j] + weight[i]
            best = -FLT_MAX
            scale = mx
            bi1 = -1
            bi2 = -1
            shift = 0
            for i1 in range(33):
                for i2 in range(i1, 33):
                    for sgn in range(2):
                        xx = _XP if sgn == 0 else _XM
                        sqx = (
                            (sumx[i1] - sumx[0]) * xx[0]
                            + (sumx[i2] - sumx[i1]) * xx[1]
                            + (sumx[32] - sumx[i2]) * xx[2]
                        )
                        sq2 = (
                            (sumw[i1] - sumw[0]) * xx[0] * xx[0]
                            + (sumw[i2] - sumw[i1]) * xx[1] * xx[1]
                            + (sumw[32] - sumw[i2]) * xx[2] * xx[2]
                        )
                        if sq2 > 0 and sqx * sqx > best * sq2:
                            scale = sqx / sq2
                            best = scale * sqx
                            bi1 = i1
                            bi2 = i2
                            shift = 1 if sgn == 0 else -1
            if bi1 < 0 or bi2 < 0 or shift == 0:
                scales[ib] = 0
                shifts[ib] = 1
                continue
            for j in range(32):
                L[idx[j]] = 0 if j < bi1 else (1 if j < bi2 else 2)
            if scale < 0:
                for j in range(32):
                    L[j] = 2 - L[j]
                scale = -scale
                shift = -shift
            xx = _XP if shift == 1 else _XM
            scale = _snap(x, b, off, 32, weight, L, scale, xx, xx, grid, kmap, neigh, index)
            for k in range(4):
                out[b, 2 + 4 * ib + k] = index[k] & 255
                qh[ib] |= (index[k] >> 8) << (3 * k)
            scales[ib] = scale
            shifts[ib] = shift
            max_scale = max_scale if max_scale > scale else scale
        if max_scale != 0:
            d = max_scale / _F(15.0)
            h = fp32_to_fp16_bits(d * _F(1.125))
            out[b, 0] = h & 255
            out[b, 1] = h >> 8
            idv = _F(1.0) / d
            for ib in range(8):
                lv = scale_code(idv, scales[ib], 7)
                if shifts[ib] == -1:
                    lv |= 8
                qh[ib] |= lv << 12
        for ib in range(8):
            out[b, 34 + 2 * ib] = qh[ib] & 255
            out[b, 35 + 2 * ib] = qh[ib] >> 8
    return out


@njit(cache=True, error_model="numpy")
def iq1m_kernel(x, qw, has_qw, grid, kmap, neigh):
    """IQ1_M bytes for ``x`` ``(n, 256)``: 16-value blocks, each 8-group with its own delta sign
    (4 combinations searched jointly with prefix sums per half block), 3-bit scales, and ``d``
    refitted by least squares over the whole super-block before the fp16 rounding (fudge 1.1125)."""
    n = x.shape[0]
    out = np.zeros((n, 56), np.uint8)
    weight = np.empty(16, np.float32)
    px = np.zeros((2, 17), np.float32)
    pw = np.zeros((2, 17), np.float32)
    sqx = np.empty(4, np.float32)
    sq2 = np.empty(4, np.float32)
    qxp = np.empty(2, np.float32)
    qxm = np.empty(2, np.float32)
    q2p = np.empty(2, np.float32)
    q2m = np.empty(2, np.float32)
    L = np.zeros(16, np.int64)
    index = np.zeros(2, np.int64)
    scales = np.zeros(16, np.float32)
    shifts = np.zeros(16, np.int64)
    masks = np.array([0x00, 0x80, 0x08, 0x88], np.int64)
    p2 = _XP[2]
    m2 = _XM[2]
    cp1 = _XP[0] * _XP[0] - _XP[1] * _XP[1]
    cp2 = _XP[1] * _XP[1] - _XP[2] * _XP[2]
    cm1 = _XM[0] * _XM[0] - _XM[1] * _XM[1]
    cm2 = _XM[1] * _XM[1] - _XM[2] * _XM[2]
    for b in range(n):
        sigma2 = super_block_sigma2(x, b, True)
        max_scale = _F(0.0)
        for ib in range(16):
            off = 16 * ib
            _weights(x, qw, has_qw, b, off, 16, sigma2, weight)
            mx = abs(x[b, off])
            for i in range(1, 16):
                a = abs(x[b, off + i])
                mx = mx if mx > a else a
            if mx < _F(1e-7):  # GROUP_MAX_EPS_IQ1_M
                scales[ib] = 0
                shifts[ib] = 0
                continue
            idx = np.argsort(x[b, off : off + 16], kind="mergesort")  # C's qsort, see iq1s_kernel
            px[0, 0] = 0
            px[1, 0] = 0
            pw[0, 0] = 0
            pw[1, 0] = 0
            for j in range(16):
                i = idx[j]
                h = 0 if i < 8 else 1
                px[h, j + 1] = px[h, j] + weight[i] * x[b, off + i]
                px[1 - h, j + 1] = px[1 - h, j]
                pw[h, j + 1] = pw[h, j] + weight[i]
                pw[1 - h, j + 1] = pw[1 - h, j]
            best = -FLT_MAX
            scale = mx
            bi1 = -1
            bi2 = -1
            bk = -1
            for i1 in range(17):
                for i2 in range(i1, 17):
                    for h in range(2):
                        sx = px[h, i1] + px[h, i2]
                        qxp[h] = px[h, 16] * p2 - sx
                        qxm[h] = px[h, 16] * m2 - sx
                        q2p[h] = pw[h, 16] * p2 * p2 + pw[h, i1] * cp1 + pw[h, i2] * cp2
                        q2m[h] = pw[h, 16] * m2 * m2 + pw[h, i1] * cm1 + pw[h, i2] * cm2
                    sqx[0] = qxp[0] + qxp[1]
                    sqx[1] = qxp[0] + qxm[1]
                    sqx[2] = qxm[0] + qxp[1]
                    sqx[3] = qxm[0] + qxm[1]
                    sq2[0] = q2p[0] + q2p[1]
                    sq2[1] = q2p[0] + q2m[1]
                    sq2[2] = q2m[0] + q2p[1]
                    sq2[3] = q2m[0] + q2m[1]
                    for k in range(4):
                        if sq2[k] > 0 and sqx[k] * sqx[k] > best * sq2[k]:
                            scale = sqx[k] / sq2[k]
                            best = scale * sqx[k]
                            bi1 = i1
                            bi2 = i2
                            bk = k
            if bi1 < 0 or bi2 < 0 or bk < 0:
                scales[ib] = 0
                shifts[ib] = 0
                continue
            for j in range(16):
                L[idx[j]] = 0 if j < bi1 else (1 if j < bi2 else 2)
            if scale < 0:
                for j in range(16):
                    L[j] = 2 - L[j]
                scale = -scale
                bk = 3 - bk
            xx0 = _XP if bk < 2 else _XM
            xx1 = _XP if bk % 2 == 0 else _XM
            scale = _snap(x, b, off, 16, weight, L, scale, xx0, xx1, grid, kmap, neigh, index)
            out[b, 2 * ib] = index[0] & 255
            out[b, 2 * ib + 1] = index[1] & 255
            out[b, 32 + ib] = (index[0] >> 8) | ((index[1] >> 8) << 4)
            scales[ib] = scale
            shifts[ib] = bk
            max_scale = max_scale if max_scale > scale else scale
        if max_scale == 0:
            continue
        sc = np.zeros(4, np.int64)
        d = max_scale / _F(15.0)
        idv = _F(1.0) / d
        sumqx = _F(0.0)
        sumq2 = _F(0.0)
        for ib in range(16):
            off = 16 * ib
            lv = scale_code(idv, scales[ib], 7)
            sc[ib // 4] |= lv << (3 * (ib % 4))
            out[b, 32 + ib] |= masks[shifts[ib]]
            _weights(x, qw, has_qw, b, off, 16, sigma2, weight)
            qhv = np.int64(out[b, 32 + ib])
            for k in range(2):
                if k == 0:
                    xx = _XP if shifts[ib] < 2 else _XM
                else:
                    xx = _XP if shifts[ib] % 2 == 0 else _XM
                g = np.int64(out[b, 2 * ib + k]) + ((qhv << (8 - 4 * k)) & 0x700)
                for j in range(8):
                    w = weight[8 * k + j]
                    q = xx[(grid[g, j] - 1) // 2] * _F(2 * lv + 1)
                    sumqx += w * q * x[b, off + 8 * k + j]
                    sumq2 += w * q * q
        if sumq2 > 0:
            d = sumqx / sumq2
        s = np.int64(fp32_to_fp16_bits(d * _F(1.1125)))
        sc[0] |= (s & 0x000F) << 12
        sc[1] |= (s & 0x00F0) << 8
        sc[2] |= (s & 0x0F00) << 4
        sc[3] |= s & 0xF000
        for j in range(4):
            out[b, 48 + 2 * j] = sc[j] & 255
            out[b, 49 + 2 * j] = sc[j] >> 8
    return out


def _values(grid: np.ndarray, delta_neg: np.ndarray) -> np.ndarray:
    """``grid + delta`` in float32 (delta = -0.125 where the delta bit is set)."""
    return grid + np.where(delta_neg, -DELTA, DELTA)


class IQ1_S(IQFormat):
    name = "iq1_s"
    description = (
        "llama.cpp 1.56-bit lattice: ternary 8-value points of a 2048-entry grid, +-1/8 shift, 3-bit scales"
    )
    requires_imatrix = True

    def quantize_blocks(self, blocks: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:  # type: ignore[override]
        g = quantizer_grid(self.name)
        q, _ = weights_arg(qw)
        return iq1s_kernel(blocks, q, g.grid, g.kmap, g.neighbours)

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        qh = np.ascontiguousarray(raw[:, 34:50]).view("<u2")  # (n, 8)
        dl = (get_fp16(raw, 0) * (2 * ((qh >> 12) & 7) + 1)).reshape(n, 8, 1, 1)
        hi = ((qh[:, :, None] >> np.array([0, 3, 6, 9], np.uint16)) & 7).reshape(n, 32)
        grid = decoder_grid(self.name)[raw[:, 2:34].astype(np.uint16) | (hi << 8)].reshape(n, 8, 4, 8)
        return (dl * _values(grid, ((qh & 0x8000) != 0).reshape(n, 8, 1, 1))).reshape(n, QK_K)


class IQ1_M(IQFormat):
    name = "iq1_m"
    description = "llama.cpp 1.75-bit lattice: ternary 8-value points of a 2048-entry grid, +-1/8 shift per 8, 3-bit scales"

    def quantize_blocks(self, blocks: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:  # type: ignore[override]
        g = quantizer_grid(self.name)
        q, has = weights_arg(qw)
        return iq1m_kernel(blocks, q, has, g.grid, g.kmap, g.neighbours)

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        sc = np.ascontiguousarray(raw[:, 48:56]).view("<u2")  # (n, 4)
        dbits = (sc & np.uint16(0xF000)) >> np.array([12, 8, 4, 0], np.uint16)
        d = np.bitwise_or.reduce(dbits, axis=1).view(np.float16).astype(np.float32).reshape(n, 1)
        s = ((sc[:, :, None] >> np.array([0, 3, 6, 9], np.uint16)) & 7).reshape(n, 16)
        dl = (d * (2 * s + 1)).reshape(n, 16, 1, 1)
        qh = (raw[:, 32:48, None] >> np.array([0, 4], np.uint8)).reshape(n, 32)  # (n, 32) per 8-group
        idx = raw[:, 0:32].astype(np.uint16) | ((qh & 7).astype(np.uint16) << 8)
        grid = decoder_grid(self.name)[idx].reshape(n, 16, 2, 8)
        neg = ((qh & 8) != 0).reshape(n, 16, 2, 1)
        return (dl * _values(grid, neg)).reshape(n, QK_K)


register(IQ1_S())
register(IQ1_M())
