"""llama.cpp's IQ lattice types (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S): the
shared codec base (the ``imatrix`` option itself is :class:`.common.GGMLFormat`'s, shared by every
GGML type), and the numba pieces the IQ2/IQ3 quantizers share.

These types do not round each value to an integer: every 8 (IQ1/IQ2) or 4 (IQ3) magnitudes are
replaced by the nearest point of a small fixed code book (:mod:`.iq_grids`), with the signs stored
separately, times a 4-bit (IQ2/IQ3) or 3-bit (IQ1) block scale of an fp16 super-block scale.
The search for the block scale and the grid points is llama.cpp's ``quantize_row_iq*_impl`` of
ggml/src/ggml-quants.c, re-implemented in numba in C's float32 evaluation order (see
:mod:`._qx_kernels` for the rules: no FMA, ``nearest_int`` bit trick, C's operand order), so the
bytes equal ``ggml_quantize_chunk``'s with and without ``quant_weights``.

Importing this module registers the formats (the codecs live in :mod:`.iq3`, :mod:`.iq2` and
:mod:`.iq1`, imported at the bottom).

``encode(x, imatrix=w)``: ``w`` is llama.cpp's importance vector for the tensor (float32, one
positive value per column, what ``llama-imatrix`` stores: the mean of x**2 of each input column);
the quantizers then weight value ``i`` of a super-block by ``w[i] * sqrt(sigma2 + x[i]**2)``.
IQ2_XXS, IQ2_XS and IQ1_S need one (llama.cpp aborts without), the others fall back to llama.cpp's
imatrix-free weights.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._qx_kernels import kernel_input, nearest_int
from .common import GGMLFormat

_F = np.float32
FLT_MAX = np.float32(3.4028234663852886e38)
QK_K = 256


class IQFormat(GGMLFormat):
    """A GGML IQ lattice type: ``quantize_blocks(blocks, qw)`` gets the importance weights of each
    256-value super-block (``None`` without imatrix). The ``imatrix`` option and its validation
    are :class:`.common.GGMLFormat`'s (shared by every GGML type)."""

    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        blocks = kernel_input(rows.reshape(-1, QK_K))
        qw = np.ascontiguousarray(np.broadcast_to(w, rows.shape).reshape(-1, QK_K))
        return self.quantize_blocks(blocks, qw)

    def quantize_blocks(self, blocks: np.ndarray, qw: np.ndarray | None = None) -> np.ndarray:  # type: ignore[override]
        raise NotImplementedError


def weights_arg(qw: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """The kernels take ``(qw, has_qw)`` (one numba specialisation for both cases)."""
    if qw is None:
        return np.zeros((0, QK_K), np.float32), False
    return kernel_input(qw), True


# -- numba pieces shared by the IQ2/IQ3 quantizers ------------------------------------------------
@njit(cache=True, inline="always", error_model="numpy")
def super_block_sigma2(x, b, two):
    """``sumx2`` summed in order over the super-block, then ``2*sumx2/QK_K`` (``two``) or
    ``sumx2/QK_K`` (IQ2_XXS, IQ2_XS)."""
    s = _F(0.0)
    for i in range(QK_K):
        s += x[b, i] * x[b, i]
    return (_F(2.0) * s) / _F(QK_K) if two else s / _F(QK_K)


@njit(cache=True, inline="always", error_model="numpy")
def block_weights(x, qw, has_qw, b, off, n, sigma2, noqw_mode, weight, waux):
    """``weight[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i])`` with an imatrix, else ``x*x`` (mode 0) or
    ``0.25f*sigma2 + x*x`` (mode 1, IQ2_S); ``waux = sqrtf(weight)``."""
    for i in range(n):
        xi = x[b, off + i]
        if has_qw:
            weight[i] = qw[b, off + i] * np.sqrt(sigma2 + xi * xi)
        elif noqw_mode == 1:
            weight[i] = _F(0.25) * sigma2 + xi * xi
        else:
            weight[i] = xi * xi
        waux[i] = np.sqrt(weight[i])


@njit(cache=True, inline="always", error_model="numpy")
def abs_and_signs(x, b, off, n, weight, xval, signs, even):
    """``xval = |x|`` and one sign byte per 8 values. With ``even`` (IQ2_XXS, IQ2_XS, IQ3_XXS: 7 sign
    bits stored, the 8th implied by even parity) an odd count of negatives flips the value with the
    smallest ``weight*x*x`` (first on ties) to ``-|x|`` and its sign bit, and the byte keeps 7 bits."""
    for k in range(n // 8):
        s = 0
        nflip = 0
        for i in range(8):
            xi = x[b, off + 8 * k + i]
            if xi >= 0:
                xval[8 * k + i] = xi
            else:
                xval[8 * k + i] = -xi
                nflip += 1
                s |= 1 << i
        if even and nflip % 2:
            imin = 0
            xi = x[b, off + 8 * k]
            mn = weight[8 * k] * xi * xi
            for i in range(1, 8):
                xi = x[b, off + 8 * k + i]
                ax = weight[8 * k + i] * xi * xi
                if ax < mn:
                    mn = ax
                    imin = i
            xval[8 * k + imin] = -xval[8 * k + imin]
            s ^= 1 << imin
        signs[k] = s & 127 if even else s


@njit(cache=True, inline="always", error_model="numpy")
def find_best_neighbour(neigh, off, grid, xval, waux, o, scale, L):
    """``iq2_find_best_neighbour`` / ``iq3_find_best_neighbour``: among the listed neighbours the
    first with the smallest ``sum(waux*(scale*q - x)**2)``; writes its levels into ``L[o:o+dim]``."""
    dim = grid.shape[1]
    best = FLT_MAX
    gi = -1
    for j in range(1, np.int64(neigh[off]) + 1):
        g = np.int64(neigh[off + j])
        d2 = _F(0.0)
        for i in range(dim):
            diff = scale * _F(grid[g, i]) - xval[o + i]
            d2 += waux[o + i] * diff * diff
        if d2 < best:
            best = d2
            gi = g
    for i in range(dim):
        L[o + i] = (grid[gi, i] - 1) // 2
    return gi


@njit(cache=True, error_model="numpy")
def grid_search(
    xval, weight, waux, n, bits, kmaxq, is_max, step, ref_max, scale,
    grid, kmap, neigh, L, Laux, ongrid, ongrid_aux, init_on, fix_all, fix_if_offgrid,
):  # fmt: skip
    """The trial-scale search of ``quantize_row_iq{2_xxs,2_xs,2_s,3_xxs,3_s}_impl`` for one block
    of ``n`` magnitudes: trial inverse scales ``(2*kMaxQ - 1 + is*step)/ref_max``, levels rounded
    and clamped, snapped to the grid (or its best listed neighbour), the "strictly better"
    least-squares scale kept; then the points are re-snapped with the final scale -- all of them
    (``fix_all``: IQ2_XXS, IQ3_S) or only those that were off the grid -- if any was off the grid
    (``fix_if_offgrid``; IQ2_XXS re-snaps whenever the scale is positive) and the scale refitted.
    Leaves the levels in ``L`` and returns the scale (``scale`` in: the value kept if no trial wins).
    """
    dim = grid.shape[1]
    ng = n // dim
    best = _F(0.0)
    for k in range(ng):
        ongrid[k] = init_on
    for t in range(-is_max, is_max + 1):
        idv = (_F(2 * kmaxq - 1) + _F(t) * step) / ref_max
        this_scale = _F(1.0) / idv
        for k in range(ng):
            u = 0
            for i in range(dim):
                lv = nearest_int(_F(0.5) * (idv * xval[dim * k + i] - _F(1.0)))
                lv = max(0, min(kmaxq - 1, lv))
                Laux[dim * k + i] = lv
                u |= lv << (bits * i)
            gi = kmap[u]
            ongrid_aux[k] = True
            if gi < 0:
                ongrid_aux[k] = False
                find_best_neighbour(neigh, -gi - 1, grid, xval, waux, dim * k, this_scale, Laux)
        sumqx = _F(0.0)
        sumq2 = _F(0.0)
        for i in range(n):
            w = weight[i]
            q = _F(2 * Laux[i] + 1)
            sumqx += w * xval[i] * q
            sumq2 += w * q * q
        if sumq2 > 0 and sumqx * sumqx > best * sumq2:
            scale = sumqx / sumq2
            best = scale * sumqx
            for i in range(n):
                L[i] = Laux[i]
            for k in range(ng):
                ongrid[k] = ongrid_aux[k]
    n_off = 0
    for k in range(ng):
        if not ongrid[k]:
            n_off += 1
    if (n_off > 0 or not fix_if_offgrid) and scale > 0:
        idv = _F(1.0) / scale
        for k in range(ng):
            if ongrid[k] and not fix_all:
                continue
            u = 0
            for i in range(dim):
                lv = nearest_int(_F(0.5) * (idv * xval[dim * k + i] - _F(1.0)))
                lv = max(0, min(kmaxq - 1, lv))
                L[dim * k + i] = lv
                u |= lv << (bits * i)
            gi = kmap[u]
            if gi < 0:
                find_best_neighbour(neigh, -gi - 1, grid, xval, waux, dim * k, scale, L)
        sumqx = _F(0.0)
        sumq2 = _F(0.0)
        for i in range(n):
            w = weight[i]
            q = _F(2 * L[i] + 1)
            sumqx += w * xval[i] * q
            sumq2 += w * q * q
        if sumq2 > 0:
            scale = sumqx / sumq2
    return scale


@njit(cache=True, inline="always", error_model="numpy")
def grid_index(L, o, dim, bits, kmap):
    """Grid index of the levels ``L[o:o+dim]`` (always on the grid after :func:`grid_search`)."""
    u = 0
    for i in range(dim):
        u |= np.int64(L[o + i]) << (bits * i)
    return np.int64(kmap[u])


@njit(cache=True, inline="always", error_model="numpy")
def scale_code(idv, s, top):
    """``MAX(0, MIN(top, nearest_int(0.5f*(id*scale - 1))))``: the 4-bit (3-bit) block scale."""
    return max(0, min(top, nearest_int(_F(0.5) * (idv * s - _F(1.0)))))
