"""numba kernels of llama.cpp's importance-matrix quantizers (``quant_weights != NULL``).

``ggml_quantize_chunk`` with ``quant_weights`` runs a separate path per type in
ggml/src/ggml-quants.c; re-implemented here in C's float32 evaluation order (the rules are in
:mod:`._qx_kernels`: every operand float32, no FMA, ``nearest_int`` bit trick, left-to-right sums):

* ``quantize_row_q4_0_impl`` / ``q5_0``: ``make_qx_quants(32, 8|16, rmse_type=1, weight)``;
* ``quantize_row_q4_1_impl`` / ``q5_1``: ``make_qkx3_quants(32, 15|31, -0.9f, 0.05f, 36)``;
* ``quantize_row_q2_K_impl``, ``q4_K``, ``q5_K``: ``make_qkx3_quants`` per sub-block (64
  sub-blocks side by side in SIMD lanes: :mod:`._qkx_lanes`), then ``make_qp_quants`` for the
  sub-block scales and mins, weighted by the sub-block weight sums;
* ``quantize_row_q3_K_impl``: ``make_qx_quants(16, 4)`` per sub-block, ``make_qx_quants(16, 32)``
  for the scales; ``quantize_row_q6_K_impl``: ``make_qx_quants(16, 32)`` with the raw imatrix.

The weights are ``qw[i] * sqrtf(sigma2 + x[i]*x[i])`` with ``sigma2`` the mean square of the *row*
(legacy types: ``sum_x2/n_per_row``), or ``2*sum_x2/256`` (Q3_K, Q4_K, Q5_K) / ``sum_x2/256``
(Q2_K) of the super-block. ``make_qkx3_quants`` with weights is ``make_qkx2_quants``
operation for operation (``max <= min`` equals ``max == min`` once ``min <= 0``), so
:func:`._kq_kernels._make_qkx2` is reused. (Evaluating its 37 trials speculatively in SIMD lanes,
recomputing the later ones after each win, was tried: exact but 5x slower, as most trials win.)
The packing is numpy in the codec modules.

Each kernel takes the blocks ``(nb, bs)`` of rows of ``ncols`` values and the imatrix ``w``
``(ncols,)``: block ``b`` reads ``w[(b % (ncols // bs)) * bs:]``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kq_kernels import _make_qkx2
from ._qkx_lanes import LC, SCALE, THE_MIN, WT, XT, lane_buffer, qkx3_lanes
from ._qx_kernels import EPS, nearest_int, pick_lane, signed_absmax

_F = np.float32
QK_K = 256
_LANES = 24  # make_qx_quants' 19 candidate scales padded to whole SIMD vectors


@njit(cache=True, inline="always", error_model="numpy")
def make_qx_w(x, w, nmax, L, isc, sx, s2):
    """``make_qx_quants(n, nmax, x, L, rmse_type=1, qw=w)`` on 1-D float32 ``x``/``w``: codes
    ``l + nmax`` in ``L`` (uint8), returns the scale. First guess ``-nmax/max``, then 18 trial
    inverse scales ``-(nmax + 0.1f*is)/max``, is = -9..9 (is != 0); a trial wins when
    ``sumlx^2 / suml2`` is strictly larger (compared as ``sumlx*sumlx > best*suml2``, as in C).

    As in :func:`._qx_kernels._make_qx_quants_q6`, the 19 candidates are summed together, one
    lane each (``isc``/``sx``/``s2``: float32 buffers of ``_LANES``; lane 9 is the first guess,
    since ``-(nmax + 0.1f*0)`` is exactly ``-nmax``): each lane adds its terms in C's order, so
    the sums are bit-identical, but the lanes vectorise. The sequential choice is replayed after.
    """
    n = x.shape[0]
    amax, mx = signed_absmax(x)
    if amax < EPS:  # all zero: codes 0 (not nmax) and scale 0
        for i in range(n):
            L[i] = 0
        return _F(0.0)
    fn = _F(nmax)
    lo, hi = -nmax, nmax - 1
    for t in range(_LANES):
        isc[t] = -(fn + _F(0.1) * _F(t - 9)) / mx
        sx[t] = _F(0.0)
        s2[t] = _F(0.0)
    for i in range(n):
        xi = x[i]
        wi = w[i]
        wx = wi * xi
        for t in range(_LANES):  # lanes 19.. are padding (whole vectors), never read
            fl = _F(min(max(nearest_int(isc[t] * xi), lo), hi))
            sx[t] += wx * fl  # C: w*x[i]*l == (w*x)*l
            s2[t] += wi * fl * fl
    scale, win = pick_lane(sx, s2)
    for i in range(n):
        L[i] = min(max(nearest_int(isc[win] * x[i]), lo), hi) + nmax
    return scale


@njit(cache=True, inline="always", error_model="numpy")
def make_qp_w(x, w, nmax, L):
    """``make_qp_quants(n, nmax, x, L, quant_weights=w)``: non-negative codes of the sub-block
    scales (or mins) ``x``. ``L`` is uint8 as in C: a negative code (a negative scale) wraps and
    the later arithmetic reads the wrapped value, exactly like the C ``uint8_t L[]``."""
    n = x.shape[0]
    mx = _F(0.0)
    for i in range(n):
        mx = mx if mx > x[i] else x[i]  # C's MAX(a, b) macro: ((a) > (b) ? (a) : (b))
    if mx < EPS:
        for i in range(n):
            L[i] = 0
        return _F(0.0)
    fn = _F(nmax)
    iscale = fn / mx
    for i in range(n):
        L[i] = nearest_int(iscale * x[i]) & 0xFF
    scale = _F(1.0) / iscale
    best_mse = _F(0.0)
    for i in range(n):
        diff = x[i] - scale * _F(L[i])
        best_mse += w[i] * diff * diff
    for t in range(-4, 5):
        if t == 0:
            continue
        isc = (_F(0.1) * _F(t) + fn) / mx
        sc = _F(1.0) / isc
        mse = _F(0.0)
        for i in range(n):
            diff = x[i] - sc * _F(min(nmax, nearest_int(isc * x[i])))
            mse += w[i] * diff * diff
        if mse < best_mse:
            best_mse = mse
            iscale = isc
    sumlx = _F(0.0)
    suml2 = _F(0.0)
    for i in range(n):
        q = min(nmax, nearest_int(iscale * x[i]))
        L[i] = q & 0xFF
        fl = _F(q)  # the sums use the int, not the wrapped byte
        sumlx += w[i] * x[i] * fl
        suml2 += w[i] * fl * fl
    for _itry in range(5):
        n_changed = 0
        for i in range(n):
            wi = w[i]
            fl = _F(L[i])
            slx = sumlx - wi * x[i] * fl
            sl2 = suml2 - wi * fl * fl
            if slx > 0 and sl2 > 0:
                new_l = min(nmax, nearest_int(x[i] * sl2 / slx))
                if new_l != np.int64(L[i]):
                    fn2 = _F(new_l)
                    slx += wi * x[i] * fn2
                    sl2 += wi * fn2 * fn2
                    if slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[i] = new_l & 0xFF
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    return sumlx / suml2 if suml2 > 0 else _F(0.0)


@njit(cache=True, inline="always")
def _lanes():
    return np.empty(_LANES, np.float32), np.empty(_LANES, np.float32), np.empty(_LANES, np.float32)


@njit(cache=True, inline="always", error_model="numpy")
def _weights(x, b, off, n, w, col, sigma2, out):
    """``out[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i])`` for ``x[b, off:off+n]``, ``qw = w[col:]``;
    returns their sum (C's ``sumw``, left to right from 0)."""
    s = _F(0.0)
    for i in range(n):
        xi = x[b, off + i]
        out[i] = w[col + i] * np.sqrt(sigma2 + xi * xi)
        s += out[i]
    return s


@njit(cache=True, inline="always", error_model="numpy")
def _sum_x2(x, b, n):
    s = _F(0.0)
    for i in range(n):
        s += x[b, i] * x[b, i]
    return s


# -- legacy types ------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def legacy_imatrix(x, w, ncols, nmax, affine):
    """Q4_0/Q5_0 (``affine=False``: ``make_qx_quants(32, nmax)``) and Q4_1/Q5_1 (``True``:
    ``make_qkx3_quants(32, nmax)``) on blocks ``x`` ``(nb, 32)``: codes ``(nb, 32)``, ``d`` and
    ``m`` (the block minimum, 0 for the symmetric types) as float32 ``(nb,)``. ``sigma2`` is the
    mean square of the whole row (``sum_x2/n_per_row``, the sum over the row in order)."""
    nb = x.shape[0]
    per_row = ncols // 32
    L = np.empty((nb, 32), np.uint8)
    d = np.empty(nb, np.float32)
    m = np.zeros(nb, np.float32)
    weight = np.empty(32, np.float32)
    Laux = np.empty(32, np.uint8)
    tmp = np.empty(32, np.float32)
    isc, sx, s2 = _lanes()
    sigma2 = _F(0.0)
    for b in range(nb):
        k = b % per_row
        if k == 0:  # a new row
            s = _F(0.0)
            for j in range(b, b + per_row):
                for i in range(32):
                    s += x[j, i] * x[j, i]
            sigma2 = s / _F(ncols)
        _weights(x, b, 0, 32, w, 32 * k, sigma2, weight)
        if affine:
            d[b], the_min = _make_qkx2(x[b], weight, L[b], Laux, tmp, nmax, _F(-0.9), _F(0.05), 36, False)
            m[b] = -the_min  # C stores GGML_FP32_TO_FP16(-min) of the returned the_min = -min
        else:
            d[b] = make_qx_w(x[b], weight, nmax, L[b], isc, sx, s2)
    return L, d, m


# -- K-quants ----------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def kquant1_imatrix(x, w, ncols, sub, nmax, scale_max, nl):
    """Q2_K (``sub=16, nmax=3, scale_max=15``; ``sigma2 = sum_x2/256``) and Q4_K/Q5_K
    (``sub=32, nmax=15|31, scale_max=63``; ``sigma2 = 2*sum_x2/256``): the ``make_qkx3_quants``
    codes ``(nb, 256)``, the ``make_qp_quants`` codes of the scales and mins ``(nb, 256/sub)``
    (uint8, wrapped like C) and the float32 super-block ``d``, ``dmin``.

    The sub-blocks are searched ``nl`` at a time (pass :data:`._qkx_lanes.NL`: a run-time value,
    see there), one per SIMD lane (:func:`._qkx_lanes.qkx3_lanes`); the last group is padded with
    all-zero sub-blocks, whose results are dropped."""
    nb = x.shape[0]
    ns = QK_K // sub
    per_row = ncols // QK_K
    nsub = nb * ns
    L = np.empty((nb, QK_K), np.uint8)
    Ls = np.empty((nb, ns), np.uint8)
    Lm = np.empty((nb, ns), np.uint8)
    d = np.empty(nb, np.float32)
    dmin = np.empty(nb, np.float32)
    scales = np.empty((nb, ns), np.float32)
    mins = np.empty((nb, ns), np.float32)
    sw = np.empty((nb, ns), np.float32)
    sigma2 = np.empty(nb, np.float32)
    for b in range(nb):
        s = _sum_x2(x, b, QK_K)
        sigma2[b] = s / _F(QK_K) if sub == 16 else _F(2.0) * s / _F(QK_K)
    a = lane_buffer(nl)
    for g in range(0, nsub, nl):
        m = min(nl, nsub - g)
        for k in range(m):
            b, j = divmod(g + k, ns)
            off = sub * j
            col = (b % per_row) * QK_K + off
            s2 = sigma2[b]
            s = _F(0.0)
            for i in range(sub):  # C: weight[l] = qw[l] * sqrtf(sigma2 + x[l]*x[l]); sumw += weight[l]
                xi = x[b, off + i]
                wi = w[col + i] * np.sqrt(s2 + xi * xi)
                a[(XT + i) * nl + k] = xi
                a[(WT + i) * nl + k] = wi
                s += wi
            sw[b, j] = s
        for k in range(m, nl):  # padding: all-zero sub-blocks
            for i in range(sub):
                a[(XT + i) * nl + k] = _F(0.0)
                a[(WT + i) * nl + k] = _F(0.0)
        qkx3_lanes(a, nl, sub, nmax, _F(-0.9), _F(0.05), 36)
        for k in range(m):
            b, j = divmod(g + k, ns)
            scales[b, j] = a[SCALE * nl + k]
            mins[b, j] = a[THE_MIN * nl + k]
            for i in range(sub):
                L[b, sub * j + i] = np.uint8(a[(LC + i) * nl + k])
    for b in range(nb):
        d[b] = make_qp_w(scales[b], sw[b], scale_max, Ls[b])
        dmin[b] = make_qp_w(mins[b], sw[b], scale_max, Lm[b])
    return L, Ls, Lm, d, dmin


@njit(cache=True, error_model="numpy")
def q3k_imatrix(x, w, ncols):
    """``quantize_row_q3_K_impl``: codes 0..7 ``(nb, 256)``, 6-bit scales ``(nb, 16)``, float32
    ``d_block`` (the caller rounds it to fp16 and re-derives the codes)."""
    nb = x.shape[0]
    per_row = ncols // QK_K
    L = np.empty((nb, QK_K), np.uint8)
    Ls = np.empty((nb, 16), np.uint8)
    d = np.empty(nb, np.float32)
    weight = np.empty(16, np.float32)
    scales = np.empty(16, np.float32)
    sw = np.empty(16, np.float32)
    isc, sx, s2 = _lanes()
    for b in range(nb):
        col = (b % per_row) * QK_K
        sigma2 = _F(2.0) * _sum_x2(x, b, QK_K) / _F(QK_K)
        for j in range(16):
            sw[j] = _weights(x, b, 16 * j, 16, w, col + 16 * j, sigma2, weight)
            scales[j] = make_qx_w(x[b, 16 * j : 16 * (j + 1)], weight, 4, L[b, 16 * j : 16 * (j + 1)], isc, sx, s2)
        d[b] = make_qx_w(scales, sw, 32, Ls[b], isc, sx, s2)
    return L, Ls, d


@njit(cache=True, error_model="numpy")
def q6k_imatrix_scales(x, w, ncols):
    """The 16 sub-block scales of ``quantize_row_q6_K_impl``: ``make_qx_quants(16, 32, x, L, 1, qw)``
    with the imatrix itself as weights (no sigma2 term), codes ``(nb, 256)``, scales ``(nb, 16)``."""
    nb = x.shape[0]
    per_row = ncols // QK_K
    L = np.empty((nb, QK_K), np.uint8)
    scales = np.empty((nb, 16), np.float32)
    isc, sx, s2 = _lanes()
    for b in range(nb):
        col = (b % per_row) * QK_K
        for j in range(16):
            xs, ws, Lj = x[b, 16 * j : 16 * (j + 1)], w[col + 16 * j : col + 16 * (j + 1)], L[b, 16 * j : 16 * (j + 1)]
            scales[b, j] = make_qx_w(xs, ws, 32, Lj, isc, sx, s2)
    return L, scales
