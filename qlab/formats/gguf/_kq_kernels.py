"""numba kernels for the K-quant scale/min search (llama.cpp ``make_qkx2_quants``).

The search is inherently sequential per sub-block (a weighted least-squares refit for each of
``nstep + 1`` trial scales), so it runs as a compiled loop over sub-blocks. Everything else
(quantizing the sub-block scales to 4/6 bits, the fp16 super-block scales, re-deriving the codes
and the bit packing) is vectorised numpy in :mod:`.kquants_type1`.

Exactness: llama.cpp's ``ggml-base`` (where ``ggml-quants.c`` lives) is compiled for the baseline
ISA, so every operation is an IEEE float32 operation, evaluated left to right, with no FMA
contraction and no reassociation of the sums. Every intermediate here is therefore forced to
float32 (``_F(...)``): numba would otherwise promote ``float32 op int`` or a Python float literal to
float64. LLVM does not contract ``a*b + c`` without fast-math flags, so the C rounding order is
kept (checked: llama-cpp-python's libggml-base.so has no FMA instructions, and these kernels
match its bytes on the committed oracle and on millions of random/adversarial sub-blocks).

Two C quirks that matter for the bytes: ``min`` is updated when a trial wins, so later trials
use ``max - this_min`` and ``x - this_min``; and ``nearest_int`` reads float bits (the shared bit-cast
helper :func:`._qx_kernels.nearest_int`, exact also for out-of-range values). Speed: the code computation is split from the
(strictly ordered) float sums so that LLVM can vectorise it; one kernel per type with the C
call's constants folded in. About as fast as llama.cpp's single-threaded reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._qx_kernels import nearest_int

_F = np.float32


@njit(cache=True, inline="always", error_model="numpy")
def _codes(x, xmin, iscale, nmax, out):
    """``out[i] = clamp(nearest_int(iscale*(x[i] - min)), 0, nmax)``: a separate loop with no
    reduction, so LLVM vectorises it (the float sums below must stay sequential)."""
    for i in range(x.shape[0]):
        out[i] = min(nmax, max(0, nearest_int(_F(iscale * _F(x[i] - xmin)))))


@njit(cache=True, inline="always", error_model="numpy")
def _wsum_error(x, w, q, scale, offset, use_mad, tmp):
    """``sum_i w[i] * err(scale*q[i] + offset - x[i])`` with err = |.| or (.)^2, summed in order."""
    n = x.shape[0]
    for i in range(n):  # vectorisable part
        diff = _F(_F(_F(scale * _F(q[i])) + offset) - x[i])
        tmp[i] = _F(w[i] * (abs(diff) if use_mad else _F(diff * diff)))
    total = _F(0.0)
    for i in range(n):  # C's left-to-right float32 accumulation
        total = _F(total + tmp[i])
    return total


@njit(cache=True, inline="always", error_model="numpy")
def _make_qkx2(x, w, L, Laux, tmp, nmax, rmin, rdelta, nstep, use_mad):
    """One sub-block of ``make_qkx2_quants`` (ggml-quants.c). Writes the codes into ``L`` and
    returns ``(scale, the_min)`` with ``the_min = -min >= 0`` like the C out-parameter."""
    n = x.shape[0]
    fmax = _F(nmax)
    xmin = x[0]
    xmax = x[0]
    sum_w = w[0]
    sum_x = _F(sum_w * x[0])
    for i in range(1, n):
        if x[i] < xmin:
            xmin = x[i]
        if x[i] > xmax:
            xmax = x[i]
        sum_w = _F(sum_w + w[i])
        sum_x = _F(sum_x + _F(w[i] * x[i]))
    if xmin > 0:
        xmin = _F(0.0)  # +0.0: the returned the_min is then -0.0, as in C
    if xmax == xmin:
        L[:] = 0
        return _F(0.0), _F(-xmin)
    iscale = _F(fmax / _F(xmax - xmin))
    scale = _F(_F(1.0) / iscale)
    _codes(x, xmin, iscale, nmax, L)
    best_error = _wsum_error(x, w, L, scale, xmin, use_mad, tmp)
    for step in range(nstep + 1):
        # (rmin + rdelta*is + nmax) / (max - min), left to right. Quirk kept from C: once a trial
        # wins, ``min`` is the fitted offset, so later trials use (max - this_min) and x - this_min.
        iscale = _F(_F(_F(rmin + _F(rdelta * _F(step))) + fmax) / _F(xmax - xmin))
        _codes(x, xmin, iscale, nmax, Laux)
        sum_l = _F(0.0)
        sum_l2 = _F(0.0)
        sum_xl = _F(0.0)
        for i in range(n):
            ql = _F(Laux[i])
            wl = _F(w[i] * ql)  # C: w*l*l == (w*l)*l and w*l*x == (w*l)*x
            sum_l = _F(sum_l + wl)
            sum_l2 = _F(sum_l2 + _F(wl * ql))
            sum_xl = _F(sum_xl + _F(wl * x[i]))
        D = _F(_F(sum_w * sum_l2) - _F(sum_l * sum_l))
        if D > 0:
            this_scale = _F(_F(_F(sum_w * sum_xl) - _F(sum_x * sum_l)) / D)
            this_min = _F(_F(_F(sum_l2 * sum_x) - _F(sum_l * sum_xl)) / D)
            if this_min > 0:
                this_min = _F(0.0)
                this_scale = _F(sum_xl / sum_l2)
            cur_error = _wsum_error(x, w, Laux, this_scale, this_min, use_mad, tmp)
            if cur_error < best_error:
                L[:] = Laux
                best_error = cur_error
                scale = this_scale
                xmin = this_min
    return scale, _F(-xmin)


@njit(cache=True, inline="always", error_model="numpy")  # IEEE division by zero, like C
def _search(xs, nmax, rmin, rdelta, nstep, use_mad, rms_weights):
    """``make_qkx2_quants`` on every row of ``xs`` (float32 ``(m, n)`` sub-blocks).

    ``rms_weights=True``: the Q4_K/Q5_K weights ``sqrt(sum(x^2)/n) + |x|``; ``False``: Q2_K's
    ``|x|``. Returns ``scales (m,)``, ``mins (m,)`` (float32) and codes ``L (m, n)`` uint8.
    """
    m, n = xs.shape
    scales = np.empty(m, np.float32)
    mins = np.empty(m, np.float32)
    L = np.empty((m, n), np.uint8)
    w = np.empty(n, np.float32)
    tmp = np.empty(n, np.float32)
    Laux = np.empty(n, np.uint8)
    fn = _F(n)
    for b in range(m):
        x = xs[b]
        if rms_weights:
            sum_x2 = _F(0.0)
            for i in range(n):
                sum_x2 = _F(sum_x2 + _F(x[i] * x[i]))
            av_x = _F(np.sqrt(_F(sum_x2 / fn)))  # sqrtf is correctly rounded, like np.sqrt
            for i in range(n):
                w[i] = _F(av_x + abs(x[i]))
        else:
            for i in range(n):
                w[i] = abs(x[i])
        scales[b], mins[b] = _make_qkx2(x, w, L[b], Laux, tmp, nmax, rmin, rdelta, nstep, use_mad)
    return scales, mins, L


# One compiled kernel per type with the C call's constants inlined (LLVM folds them, drops the
# use_mad branch). rmin/rdelta are the float32 literals -1.f/-0.5f/0.1f of the C calls.
@njit(cache=True, error_model="numpy")
def search_q4_k(xs):
    """Q4_K: ``make_qkx2_quants(32, 15, x, w, L, &min, Laux, -1.f, 0.1f, 20, false)``."""
    return _search(xs, 15, _F(-1.0), _F(0.1), 20, False, True)


@njit(cache=True, error_model="numpy")
def search_q5_k(xs):
    """Q5_K: ``make_qkx2_quants(32, 31, x, w, L, &min, Laux, -0.5f, 0.1f, 15, false)``."""
    return _search(xs, 31, _F(-0.5), _F(0.1), 15, False, True)


@njit(cache=True, error_model="numpy")
def search_q2_k(xs):
    """Q2_K: ``make_qkx2_quants(16, 3, x, |x|, L, &min, Laux, -0.5f, 0.1f, 15, true)``."""
    return _search(xs, 3, _F(-0.5), _F(0.1), 15, True, False)
