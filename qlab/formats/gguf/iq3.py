"""IQ3_XXS and IQ3_S: 3-bit magnitudes as points of a 256/512-entry grid of 4-vectors.

Encode is byte-exact with ``quantize_row_iq3_xxs_impl(256, ...)`` / ``quantize_row_iq3_s_impl``
(ggml/src/ggml-quants.c) with and without ``quant_weights``; decode equals gguf-py's
``dequantize`` (``dequantize_row_iq3_xxs`` / ``_iq3_s``) bit for bit.

IQ3_XXS block (98 bytes / 256 values): ``d`` fp16; ``qs[64]`` grid indices (one per 4 values);
8 uint32 ``scales_and_signs``: four 7-bit sign indices (``KSIGNS``, even parity) and a 4-bit
scale ``s`` at bits 28..31. Value = ``d * (0.5 + s) * 0.5 * grid * sign``.

IQ3_S block (110 bytes / 256 values): ``d`` fp16; ``qs[64]`` low 8 bits of the 9-bit grid
indices; ``qh[8]`` their 9th bits; ``signs[32]`` one bit per value; ``scales[4]`` 4-bit scales of
the 8 blocks of 32. Value = ``d * (1 + 2*s) * grid * sign``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._qx_kernels import fp32_to_fp16_bits
from .common import get_fp16, register
from .iq_grids import KSIGNS, decoder_grid, quantizer_grid
from .iq_lattice import (
    QK_K,
    IQFormat,
    abs_and_signs,
    block_weights,
    grid_index,
    grid_search,
    scale_code,
    super_block_sigma2,
    weights_arg,
)

_F = np.float32


@njit(cache=True, error_model="numpy")
def iq3_kernel(x, qw, has_qw, grid, kmap, neigh, is_s):
    """Bytes of IQ3_XXS (``is_s`` False) or IQ3_S blocks for ``x`` ``(n, 256)``.

    Quirks replayed from the C: IQ3_S skips an all-zero 32-block *without advancing* its ``qs`` and
    ``signs`` write pointers (the next block's bytes land in its place, the last slot stays 0);
    IQ3_XXS zeroes everything when every block scale is 0; ``d`` carries a fudge factor (1.0125
    IQ3_XXS, 1.033 IQ3_S) that the 4-bit scales, computed from the unfudged ``d``, do not see.
    """
    n = x.shape[0]
    tsize = 110 if is_s else 98
    out = np.zeros((n, tsize), np.uint8)
    weight = np.empty(32, np.float32)
    waux = np.empty(32, np.float32)
    xval = np.empty(32, np.float32)
    L = np.zeros(32, np.int8)
    Laux = np.zeros(32, np.int8)
    ongrid = np.zeros(8, np.bool_)
    ongrid_aux = np.zeros(8, np.bool_)
    signs = np.zeros(4, np.int64)
    scales = np.zeros(8, np.float32)
    for b in range(n):
        sigma2 = super_block_sigma2(x, b, True)
        max_scale = _F(0.0)
        qs_pos = 0  # IQ3_S's advancing qs/signs pointers (in blocks)
        for ib in range(8):
            off = 32 * ib
            block_weights(x, qw, has_qw, b, off, 32, sigma2, 0, weight, waux)
            abs_and_signs(x, b, off, 32, weight, xval, signs, not is_s)
            mx = xval[0]
            for i in range(1, 32):
                mx = mx if mx > xval[i] else xval[i]
            for i in range(32):
                L[i] = 0
            if (is_s and mx == 0) or (not is_s and mx < _F(1e-8)):  # GROUP_MAX_EPS_IQ3_XXS / !max
                scales[ib] = 0
                continue
            scale = grid_search(
                xval, weight, waux, 32, 3, 8, 9 if is_s else 15, _F(0.2), mx, mx / _F(15.0),
                grid, kmap, neigh, L, Laux, ongrid, ongrid_aux, not is_s, is_s, True,
            )  # fmt: skip
            if scale < 0:
                scale = -scale
                for k in range(4):
                    signs[k] = (~signs[k]) & (255 if is_s else 127)
            if is_s:
                for k in range(8):
                    gi = grid_index(L, 4 * k, 4, 3, kmap)
                    out[b, 2 + 8 * qs_pos + k] = gi & 255
                    out[b, 66 + ib] |= (gi >> 8) << k  # qh[(ib*8 + k)/8]: absolute position
                for k in range(4):
                    out[b, 74 + 4 * qs_pos + k] = signs[k]
                qs_pos += 1
            else:
                for k in range(8):
                    out[b, 2 + 8 * ib + k] = grid_index(L, 4 * k, 4, 3, kmap)
                ss = signs[0] | (signs[1] << 7) | (signs[2] << 14) | (signs[3] << 21)
                for j in range(4):
                    out[b, 66 + 4 * ib + j] = (ss >> (8 * j)) & 255
            scales[ib] = scale
            max_scale = max_scale if max_scale > scale else scale
        if max_scale == 0:
            if not is_s:
                out[b, :] = 0
            continue
        d = max_scale / _F(31.0)
        h = fp32_to_fp16_bits(d * (_F(1.033) if is_s else _F(1.0125)))
        out[b, 0] = h & 255
        out[b, 1] = h >> 8
        idv = _F(1.0) / d
        for ib in range(8):
            lv = scale_code(idv, scales[ib], 15)
            if is_s:
                out[b, 106 + ib // 2] |= lv << (4 * (ib % 2))
            else:
                out[b, 66 + 4 * ib + 3] |= lv << 4
    return out


class _IQ3(IQFormat):
    is_s = False

    def quantize_blocks(self, blocks: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:  # type: ignore[override]
        g = quantizer_grid(self.name)
        q, has = weights_arg(qw)
        return iq3_kernel(blocks, q, has, g.grid, g.kmap, g.neighbours, self.is_s)


class IQ3_XXS(_IQ3):
    name = "iq3_xxs"
    description = "llama.cpp 3.06-bit lattice: 4-value points of a 256-entry grid, 7-bit signs, 4-bit scales"

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        d = get_fp16(raw, 0)  # (n, 1)
        ss = np.ascontiguousarray(raw[:, 66:98]).view("<u4")  # (n, 8)
        db = (d * (_F(0.5) + (ss >> 28).astype(_F)) * _F(0.5)).reshape(n, 8, 1, 1)
        sidx = (ss[:, :, None] >> np.array([0, 7, 14, 21], np.uint32)) & 0x7F  # (n, 8, 4)
        bits = (KSIGNS[sidx][..., None] >> np.arange(8, dtype=np.uint8)) & 1  # (n, 8, 4, 8)
        sign = np.where(bits == 0, _F(1), _F(-1))
        grid = decoder_grid(self.name)[raw[:, 2:66]].reshape(n, 8, 4, 8)  # 2 points per 8 values
        return (db * grid * sign).reshape(n, QK_K)


class IQ3_S(_IQ3):
    name = "iq3_s"
    description = "llama.cpp 3.44-bit lattice: 4-value points of a 512-entry grid, sign bits, 4-bit scales"
    is_s = True

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        d = get_fp16(raw, 0)
        sc = (raw[:, 106:110, None] >> np.array([0, 4], np.uint8)) & 15  # (n, 4, 2)
        db = (d * (1 + 2 * sc.reshape(n, 8))).reshape(n, 8, 1, 1)
        bits = (raw[:, 74:106, None] >> np.arange(8, dtype=np.uint8)) & 1  # (n, 32, 8)
        sign = np.where(bits == 0, _F(1), _F(-1)).reshape(n, 8, 4, 8)
        qh = ((raw[:, 66:74, None] >> np.arange(8, dtype=np.uint8)) & 1).astype(np.uint16).reshape(n, 64)
        idx = raw[:, 2:66].astype(np.uint16) | (qh << 8)
        grid = decoder_grid(self.name)[idx].reshape(n, 8, 4, 8)
        return (db * grid * sign).reshape(n, QK_K)


register(IQ3_XXS())
register(IQ3_S())
