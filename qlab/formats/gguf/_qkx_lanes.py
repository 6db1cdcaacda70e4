"""``make_qkx3_quants`` with weights on ``nl`` sub-blocks at once, one SIMD lane per sub-block.

llama.cpp's importance-matrix paths of Q2_K, Q4_K and Q5_K (``quantize_row_q{2,4,5}_K_impl`` in
ggml/src/ggml-quants.c) run ``make_qkx3_quants(n, nmax, x, weights, L, &min, Laux, -0.9f, 0.05f,
36, false)`` per sub-block: 37 trial scales, each a least-squares refit whose float32 sums must be
added in C's order (left to right, no FMA, no reassociation) to give the same bytes. Within one
sub-block that is a chain of dependent additions (latency bound, in C too); the trials are also
sequential (a winning trial moves ``min``, which the later trials read). But different
sub-blocks are independent, so here lane ``k`` carries sub-block ``k`` of a group of ``nl``:
each lane performs exactly the C operations of its own sub-block in C's order (so its bits are
those of the scalar :func:`._kq_kernels._make_qkx2`, which ``make_qkx3_quants`` with weights
equals), and the branches of the C code (``max <= min``, ``D > 0``, ``this_min > 0``,
``mad < best_mad``) become per-lane selects. A flat sub-block (``max <= min``) runs the trials
too, but never wins (its first error is exactly 0), and gets C's zero codes and scale at the end.

Layout: the group is transposed, row ``XT + i`` of the buffer holds value ``i`` of every lane's
sub-block, so the loops over lanes have unit stride and LLVM vectorises them. Measured on one
core (AVX-512 Xeon, 1024x1024, CPU time): the Q2_K / Q4_K imatrix kernel went from 155 / 123 ms
with the scalar search to 34 / 32 ms. (Selects must read both sides before choosing: a load
inside a branch arm kept those loops scalar and cost a third of the time.)

These kernels are inlined into :func:`._imx_kernels.kquant1_imatrix`, whose numba cache entry is
keyed on the text of ``_imx_kernels.py`` only: after editing this file, delete that entry (in
``qlab._numba_cache``'s directory) or the old compiled search keeps running.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._qx_kernels import _MAGIC

_F = np.float32
NL = 64  # lanes per group: enough for LLVM's vector width x interleave (32..64 float32)


# One flat float32 buffer holds everything a group touches, in rows of ``nl`` floats at these row
# offsets. ``nl`` must be a run-time value (the callers pass ``NL`` from Python): LLVM then
# vectorises every loop over lanes, behind run-time checks that the rows do not overlap; with a
# compile-time row length it unrolls the short loops instead and the kernel is 4x slower.
MAXN = 32  # sub-block length, at most
XMIN, XMAX, SUMW, SUMX, BEST, SL, SL2, SXL, ERR, TS, TM, DD, WIN, FLAT, SCALE, THE_MIN = range(16)
XT = 16  # rows XT + i: value i of every lane's sub-block
WT = XT + MAXN  # its weights
LC = WT + MAXN  # the best codes so far (float32)
LAUX = LC + MAXN  # the trial's codes
ROWS = LAUX + MAXN


@njit(cache=True, inline="always")
def lane_buffer(nl):
    """The zeroed working buffer of :func:`qkx3_lanes` for ``nl`` lanes: ``ROWS * nl`` float32."""
    return np.zeros(ROWS * nl, np.float32)


@njit(cache=True, inline="always", error_model="numpy")
def _fcode(f, fmax):
    """``MAX(0, MIN(nmax, nearest_int(f)))`` as float32: GGML's bit trick (add 1.5*2**23, read the
    low 23 mantissa bits) in integers, exact also for out-of-range ``f`` like
    :func:`._qx_kernels.nearest_int`; the clamp in float32 is exact (integers below 2**23)."""
    v = np.float32(f + _MAGIC)
    q = _F(np.int32((v.view(np.int32) & 0x007FFFFF) - 0x00400000))  # int32: 8 lanes per AVX2 op
    q = q if q < fmax else fmax
    return q if q > _F(0.0) else _F(0.0)


@njit(cache=True, inline="always", error_model="numpy")
def qkx3_lanes(a, nl, n, nmax, rmin, rdelta, nstep):
    """``make_qkx3_quants`` (weighted, ``use_mad=false``) on the ``nl`` sub-blocks held in the
    buffer ``a`` (:func:`lane_buffer`): the caller fills rows ``XT + i`` and ``WT + i`` for
    ``i < n``; the codes come back as float32 in rows ``LC + i``, the returned scale in row
    ``SCALE`` and ``*the_min`` (``-min``) in row ``THE_MIN``. Each lane does the C operations of
    its sub-block in C's order (``rmin``, ``rdelta``: float32)."""
    fmax = _F(nmax)
    for k in range(nl):
        a[XMIN * nl + k] = a[XT * nl + k]
    for k in range(nl):
        a[XMAX * nl + k] = a[XT * nl + k]
    for k in range(nl):
        a[SUMW * nl + k] = a[WT * nl + k]
    for k in range(nl):
        a[SUMX * nl + k] = a[WT * nl + k] * a[XT * nl + k]
    for i in range(1, n):  # C: if (x[i] < min) min = x[i]; ... sum_w += w; sum_x += w*x[i];
        for k in range(nl):
            xi = a[(XT + i) * nl + k]
            lo = a[XMIN * nl + k]
            a[XMIN * nl + k] = xi if xi < lo else lo
        for k in range(nl):
            xi = a[(XT + i) * nl + k]
            hi = a[XMAX * nl + k]
            a[XMAX * nl + k] = xi if xi > hi else hi
        for k in range(nl):
            a[SUMW * nl + k] = a[SUMW * nl + k] + a[(WT + i) * nl + k]
        for k in range(nl):
            a[SUMX * nl + k] = a[SUMX * nl + k] + a[(WT + i) * nl + k] * a[(XT + i) * nl + k]
    for k in range(nl):
        lo = a[XMIN * nl + k]
        a[XMIN * nl + k] = _F(0.0) if lo > 0 else lo
    for k in range(nl):
        a[FLAT * nl + k] = _F(1.0) if a[XMAX * nl + k] <= a[XMIN * nl + k] else _F(0.0)
    for k in range(nl):  # TS: the first inverse scale nmax/(max - min)
        a[TS * nl + k] = fmax / (a[XMAX * nl + k] - a[XMIN * nl + k])
    for k in range(nl):
        a[SCALE * nl + k] = _F(1.0) / a[TS * nl + k]
    for k in range(nl):
        a[BEST * nl + k] = _F(0.0)
    for i in range(n):
        for k in range(nl):
            a[(LC + i) * nl + k] = _fcode(a[TS * nl + k] * (a[(XT + i) * nl + k] - a[XMIN * nl + k]), fmax)
        for k in range(nl):
            diff = a[SCALE * nl + k] * a[(LC + i) * nl + k] + a[XMIN * nl + k] - a[(XT + i) * nl + k]
            a[BEST * nl + k] = a[BEST * nl + k] + a[(WT + i) * nl + k] * (diff * diff)
    for step in range(nstep + 1):
        # C: iscale = (rmin + rdelta*is + nmax)/(max - min), with min the last winner's offset
        num = rmin + rdelta * _F(step) + fmax
        for k in range(nl):
            a[TS * nl + k] = num / (a[XMAX * nl + k] - a[XMIN * nl + k])
        for k in range(nl):
            a[SL * nl + k] = _F(0.0)
        for k in range(nl):
            a[SL2 * nl + k] = _F(0.0)
        for k in range(nl):
            a[SXL * nl + k] = _F(0.0)
        for i in range(n):
            for k in range(nl):
                xi = a[(XT + i) * nl + k]
                q = _fcode(a[TS * nl + k] * (xi - a[XMIN * nl + k]), fmax)
                a[(LAUX + i) * nl + k] = q
                wl = a[(WT + i) * nl + k] * q  # C: w*l*l == (w*l)*l and w*l*x[i] == (w*l)*x[i]
                a[SL * nl + k] = a[SL * nl + k] + wl
                a[SL2 * nl + k] = a[SL2 * nl + k] + wl * q
                a[SXL * nl + k] = a[SXL * nl + k] + wl * xi
        for k in range(nl):
            sl = a[SL * nl + k]
            a[DD * nl + k] = a[SUMW * nl + k] * a[SL2 * nl + k] - sl * sl
        for k in range(nl):  # this_min, 0 if positive
            sl = a[SL * nl + k]
            tm = (a[SL2 * nl + k] * a[SUMX * nl + k] - sl * a[SXL * nl + k]) / a[DD * nl + k]
            a[TM * nl + k] = _F(0.0) if tm > 0 else tm  # C: if (this_min > 0) this_min = 0
        for k in range(nl):  # this_scale, sum_xl/sum_l2 where this_min was positive
            sl = a[SL * nl + k]
            sxl = a[SXL * nl + k]
            sl2 = a[SL2 * nl + k]
            dd = a[DD * nl + k]
            ts = (a[SUMW * nl + k] * sxl - a[SUMX * nl + k] * sl) / dd
            tm = (sl2 * a[SUMX * nl + k] - sl * sxl) / dd
            ts0 = sxl / sl2
            a[TS * nl + k] = ts0 if tm > 0 else ts
        for k in range(nl):
            a[ERR * nl + k] = _F(0.0)
        for i in range(n):
            for k in range(nl):
                diff = a[TS * nl + k] * a[(LAUX + i) * nl + k] + a[TM * nl + k] - a[(XT + i) * nl + k]
                a[ERR * nl + k] = a[ERR * nl + k] + a[(WT + i) * nl + k] * (diff * diff)
        for k in range(nl):  # C: if (D > 0) { ... if (mad < best_mad) { ... } }
            dd = a[DD * nl + k]
            err = a[ERR * nl + k]
            best = a[BEST * nl + k]
            a[WIN * nl + k] = _F(1.0) if (dd > 0) & (err < best) else _F(0.0)
        nwin = _F(0.0)
        for k in range(nl):
            nwin += a[WIN * nl + k]
        if nwin == 0:
            continue
        # the selects below read both sides first: loads in a branch would keep LLVM from vectorising
        for k in range(nl):
            new, old = a[ERR * nl + k], a[BEST * nl + k]
            a[BEST * nl + k] = new if a[WIN * nl + k] != 0 else old
        for k in range(nl):
            new, old = a[TS * nl + k], a[SCALE * nl + k]
            a[SCALE * nl + k] = new if a[WIN * nl + k] != 0 else old
        for k in range(nl):
            new, old = a[TM * nl + k], a[XMIN * nl + k]
            a[XMIN * nl + k] = new if a[WIN * nl + k] != 0 else old
        for i in range(n):
            for k in range(nl):
                new, old = a[(LAUX + i) * nl + k], a[(LC + i) * nl + k]
                a[(LC + i) * nl + k] = new if a[WIN * nl + k] != 0 else old
    # C: if (max <= min) { memset(L, 0, n); *the_min = -min; return 0.f; }. Such a lane ran the
    # trials too but never won: its start error is 0 (or NaN for an infinite weight).
    for k in range(nl):
        a[THE_MIN * nl + k] = -a[XMIN * nl + k]
    for k in range(nl):
        old = a[SCALE * nl + k]
        a[SCALE * nl + k] = _F(0.0) if a[FLAT * nl + k] != 0 else old
    for i in range(n):
        for k in range(nl):
            old = a[(LC + i) * nl + k]
            a[(LC + i) * nl + k] = _F(0.0) if a[FLAT * nl + k] != 0 else old
