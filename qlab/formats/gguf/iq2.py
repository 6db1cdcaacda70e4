"""IQ2_XXS, IQ2_XS and IQ2_S: 2-bit magnitudes as points of an E8-lattice grid of 8-vectors.

Encode is byte-exact with ``quantize_row_iq2_xxs_impl`` / ``quantize_row_iq2_xs_impl`` /
``quantize_row_iq2_s_impl`` (ggml/src/ggml-quants.c; the first two require ``quant_weights``);
decode equals gguf-py's ``dequantize`` bit for bit.

IQ2_XXS block (66 bytes / 256 values): ``d`` fp16; per 32 values two uint32: four 8-bit grid
indices (256-entry grid), then four 7-bit sign indices (``KSIGNS``) and a 4-bit scale ``s`` at
bits 28..31. Value = ``d * (0.5 + s) * 0.25 * grid * sign``.

IQ2_XS block (74 bytes): ``d`` fp16; ``qs[32]`` uint16 = 9-bit grid index (512 entries) | 7-bit
sign index << 9; ``scales[8]`` two 4-bit scales per byte (one per 16 values).

IQ2_S block (82 bytes): ``d`` fp16; ``qs[32]`` low 8 bits of 10-bit grid indices (1024 entries);
``signs[32]`` one bit per value; ``qh[8]`` the 2 high index bits; ``scales[8]`` as IQ2_XS.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._imx_kernels import make_qp_w
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
XXS, XS, S = 0, 1, 2


@njit(cache=True, error_model="numpy")
def iq2_kernel(x, qw, has_qw, grid, kmap, neigh, kind):
    """Bytes of IQ2_XXS / IQ2_XS / IQ2_S blocks (``kind`` 0/1/2) for ``x`` ``(n, 256)``.

    Per type, as in the C: block length 32 (XXS) or 16; sigma2 = ``sumx2/256`` (XXS, XS) or
    ``2*sumx2/256``; XXS starts from ``make_qp_quants`` and tries ``(5 + 0.1*is)/(3*scale)``,
    |is| <= 6, then re-snaps every point; XS/S try ``(5 + 0.1*is)/max``, |is| <= 9, re-snapping
    only off-grid points; even-parity 7-bit signs for XXS/XS, 8 sign bits for S; ``d`` =
    ``max_scale/31`` (times the fudge factor 0.9875 for S); all-zero super-blocks: XXS/XS zero their
    ``qs``, S keeps what its blocks wrote.
    """
    n = x.shape[0]
    bs = 32 if kind == XXS else 16
    nblk = QK_K // bs
    tsize = 66 if kind == XXS else (74 if kind == XS else 82)
    out = np.zeros((n, tsize), np.uint8)
    weight = np.empty(32, np.float32)
    waux = np.empty(32, np.float32)
    xval = np.empty(32, np.float32)
    L = np.zeros(32, np.int64)
    Laux = np.zeros(32, np.int64)
    ongrid = np.zeros(4, np.bool_)
    ongrid_aux = np.zeros(4, np.bool_)
    signs = np.zeros(4, np.int64)
    scales = np.zeros(16, np.float32)
    for b in range(n):
        sigma2 = super_block_sigma2(x, b, kind == S)
        max_scale = _F(0.0)
        for ib in range(nblk):
            off = bs * ib
            block_weights(x, qw, has_qw, b, off, bs, sigma2, 1, weight, waux)
            abs_and_signs(x, b, off, bs, weight, xval, signs, kind != S)
            mx = xval[0]
            for i in range(1, bs):
                mx = mx if mx > xval[i] else xval[i]
            for i in range(bs):
                L[i] = 0
            if mx < (_F(1e-8) if kind == S else _F(1e-15)):  # GROUP_MAX_EPS(_IQ2_S)
                scales[ib] = 0
                continue
            if kind == XXS:
                scale = make_qp_w(xval, weight, 4, L)  # llama.cpp make_qp_quants(32, 4, ...)
                eff_max = scale * _F(3.0)
                if eff_max <= 0:
                    scales[ib] = 0
                    for i in range(bs):
                        L[i] = 0
                    continue
                scale = grid_search(
                    xval, weight, waux, 32, 2, 3, 6, _F(0.1), eff_max, scale,
                    grid, kmap, neigh, L, Laux, ongrid, ongrid_aux, True, True, False,
                )  # fmt: skip
            else:
                scale = grid_search(
                    xval, weight, waux, 16, 2, 3, 9, _F(0.1), mx, mx / _F(5.0),
                    grid, kmap, neigh, L, Laux, ongrid, ongrid_aux, True, False, True,
                )  # fmt: skip
            if scale < 0:
                scale = -scale
                for k in range(bs // 8):
                    signs[k] = (~signs[k]) & (255 if kind == S else 127)
            for k in range(bs // 8):
                gi = grid_index(L, 8 * k, 8, 2, kmap)
                if kind == XXS:
                    out[b, 2 + 8 * ib + k] = gi
                elif kind == XS:
                    v = gi | (signs[k] << 9)
                    out[b, 2 + 2 * (2 * ib + k)] = v & 255
                    out[b, 3 + 2 * (2 * ib + k)] = v >> 8
                else:
                    i8 = 2 * ib + k
                    out[b, 2 + i8] = gi & 255
                    out[b, 66 + i8 // 4] |= (gi >> 8) << (2 * (i8 % 4))
                    out[b, 34 + i8] = signs[k]
            if kind == XXS:
                ss = signs[0] | (signs[1] << 7) | (signs[2] << 14) | (signs[3] << 21)
                for j in range(4):
                    out[b, 6 + 8 * ib + j] = (ss >> (8 * j)) & 255
            scales[ib] = scale
            max_scale = max_scale if max_scale > scale else scale
        if max_scale == 0:
            if kind != S:
                out[b, :] = 0
            continue
        d = max_scale / _F(31.0)
        h = fp32_to_fp16_bits(d * _F(0.9875) if kind == S else d)
        out[b, 0] = h & 255
        out[b, 1] = h >> 8
        idv = _F(1.0) / d
        for ib in range(nblk):
            lv = scale_code(idv, scales[ib], 15)
            if kind == XXS:
                out[b, 9 + 8 * ib] |= lv << 4
            else:
                out[b, (66 if kind == XS else 74) + ib // 2] |= lv << (4 * (ib % 2))
    return out


class _IQ2(IQFormat):
    kind = XXS

    def quantize_blocks(self, blocks: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:  # type: ignore[override]
        g = quantizer_grid(self.name)
        q, has = weights_arg(qw)
        return iq2_kernel(blocks, q, has, g.grid, g.kmap, g.neighbours, self.kind)


def _sign_values(bits: np.ndarray) -> np.ndarray:
    return np.where(bits == 0, _F(1), _F(-1))


def _scales16(d: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """``d * (0.5 + s) * 0.25`` for the 16 4-bit scales of IQ2_XS/IQ2_S, ``(n, 16, 1, 1)``."""
    n = packed.shape[0]
    s = ((packed[:, :, None] >> np.array([0, 4], np.uint8)) & 15).reshape(n, 16)
    return (d * (_F(0.5) + s) * _F(0.25)).reshape(n, 16, 1, 1)


class IQ2_XXS(_IQ2):
    name = "iq2_xxs"
    description = (
        "llama.cpp 2.06-bit lattice: 8-value E8 points of a 256-entry grid, 7-bit signs, 4-bit scales"
    )
    requires_imatrix = True

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        q = np.ascontiguousarray(raw[:, 2:66]).view("<u4").reshape(n, 8, 2)
        db = (get_fp16(raw, 0) * (_F(0.5) + (q[..., 1] >> 28).astype(_F)) * _F(0.25)).reshape(n, 8, 1, 1)
        sidx = (q[..., 1][:, :, None] >> np.array([0, 7, 14, 21], np.uint32)) & 0x7F
        sign = _sign_values((KSIGNS[sidx][..., None] >> np.arange(8, dtype=np.uint8)) & 1)
        gidx = raw[:, 2:66].reshape(n, 8, 8)[:, :, :4]
        return (db * decoder_grid(self.name)[gidx] * sign).reshape(n, QK_K)


class IQ2_XS(_IQ2):
    name = "iq2_xs"
    description = (
        "llama.cpp 2.31-bit lattice: 8-value E8 points of a 512-entry grid, 7-bit signs, 4-bit scales"
    )
    requires_imatrix = True
    kind = XS

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        qs = np.ascontiguousarray(raw[:, 2:66]).view("<u2")  # (n, 32)
        db = _scales16(get_fp16(raw, 0), raw[:, 66:74])
        sign = _sign_values((KSIGNS[qs >> 9][..., None] >> np.arange(8, dtype=np.uint8)) & 1).reshape(
            n, 16, 2, 8
        )
        grid = decoder_grid(self.name)[qs & 511].reshape(n, 16, 2, 8)
        return (db * grid * sign).reshape(n, QK_K)


class IQ2_S(_IQ2):
    name = "iq2_s"
    description = (
        "llama.cpp 2.56-bit lattice: 8-value E8 points of a 1024-entry grid, sign bits, 4-bit scales"
    )
    kind = S

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        db = _scales16(get_fp16(raw, 0), raw[:, 74:82])
        sign = _sign_values((raw[:, 34:66, None] >> np.arange(8, dtype=np.uint8)) & 1).reshape(n, 16, 2, 8)
        qh = ((raw[:, 66:74, None] >> np.array([0, 2, 4, 6], np.uint8)) & 3).astype(np.uint16).reshape(n, 32)
        grid = decoder_grid(self.name)[raw[:, 2:34].astype(np.uint16) | (qh << 8)].reshape(n, 16, 2, 8)
        return (db * grid * sign).reshape(n, QK_K)


register(IQ2_XXS())
register(IQ2_XS())
register(IQ2_S())
