"""numba kernels for the sequential scale searches of Q3_K and Q6_K, and the numba helpers every
GGML kernel shares (:func:`nearest_int`, the fp16 conversions, :func:`signed_absmax`).

Each kernel re-implements (not copies) the float32 arithmetic of llama.cpp's reference
quantizers in ``ggml/src/ggml-quants.c`` so that the resulting codes are byte-identical:

* ``make_q3_quants`` / ``quantize_row_q3_K_ref``   -> :func:`q3k_codes`
* ``make_qx_quants(rmse_type=1)`` / ``quantize_row_q6_K_ref`` -> :func:`q6k_codes`
* the IQ4_NL / IQ4_XS search (``quantize_row_iq4_nl_impl``) lives in :mod:`.iquants` and the
  K-quant ``make_qkx2_quants`` in :mod:`._kq_kernels`; both use the helpers from here.

Exactness rules followed throughout (numba keeps float32 as float32 only if every operand is
float32, so integers are converted explicitly with ``_F(...)``):

* every expression is evaluated in C's left-to-right order, e.g. ``w*x[i]*l`` is ``(w*x)*l``;
* no FMA contraction (numba does not contract without ``fastmath``; the oracle bytes agree);
* ``nearest_int`` is the ``fval + 12582912.f`` bit trick (round half to even for
  ``|fval| < 2**22``, and the same wrapped garbage as C beyond that, which the clamps then see);
* fp16 rounding of the super-block scale ``d`` is GGML's ``ggml_compute_fp32_to_fp16``
  (round to nearest even, overflow to inf), evaluated inside the kernel because the later
  re-quantization divides by the *rounded* scale.

The kernels return integer codes and scales; the bit packing is done with numpy by the callers.
numba's on-disk cache (``cache=True``) does not notice edits to helpers imported from another
module: after changing a helper here, delete the ``__pycache__`` of the modules that use it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .common import kernel_input  # noqa: F401  (re-exported: the codecs import it from here)

_F = np.float32
_MAGIC = np.float32(12582912.0)  # 1.5 * 2**23
EPS = np.float32(1e-15)  # GROUP_MAX_EPS
_Q6_LANES = 24  # 19 candidate scales padded to whole SIMD vectors


@njit(cache=True, inline="always", error_model="numpy")
def nearest_int(f):
    """GGML's ``nearest_int`` of a float32: add 1.5*2**23 in float32 so the FPU rounds half to
    even to an integer, then take the low 23 mantissa bits minus 2**22. Branch-free (so loops
    vectorise) and bit-exact with C for every input, including out-of-range/inf/NaN products
    of degenerate blocks, which the callers' clamps then map like C's."""
    v = np.float32(f + _MAGIC)
    return (np.int64(v.view(np.int32)) & 0x007FFFFF) - 0x00400000


@njit(cache=True, inline="always", error_model="numpy")
def signed_absmax(v):
    """C's ``if (fabsf(v[i]) > amax) { amax = fabsf(v[i]); max = v[i]; }`` scan from 0 over a 1-D
    float32 array: the largest magnitude and the signed value that has it (the first on ties)."""
    amax = _F(0.0)
    mx = _F(0.0)
    for i in range(v.shape[0]):
        ax = abs(v[i])
        if ax > amax:
            amax = ax
            mx = v[i]
    return amax, mx


@njit(cache=True, inline="always", error_model="numpy")
def fp32_to_fp16_bits(f):
    """``ggml_compute_fp32_to_fp16``: the float trick of the FP16 library (round to nearest even)."""
    base = (abs(f) * _F(2.0**112)) * _F(2.0**-110)
    w = np.int64(np.float32(f).view(np.uint32))
    shl1_w = (w + w) & 0xFFFFFFFF
    sign = w & 0x80000000
    bias = shl1_w & 0xFF000000
    if bias < 0x71000000:
        bias = 0x71000000
    base = np.uint32((bias >> 1) + 0x07800000).view(np.float32) + base
    bits = np.int64(np.float32(base).view(np.uint32))
    nonsign = ((bits >> 13) & 0x7C00) + (bits & 0x0FFF)
    if shl1_w > 0xFF000000:  # NaN
        nonsign = 0x7E00
    return np.uint16((sign >> 16) | nonsign)


@njit(cache=True, inline="always", error_model="numpy")
def fp16_bits_to_fp32(h):
    """Exact value of an fp16 bit pattern as float32."""
    h = np.int64(h)
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 0:
        v = _F(m) * _F(2.0**-24)
    elif e == 31:
        v = _F(np.inf) if m == 0 else _F(np.nan)
    else:
        v = np.uint32(((e + 112) << 23) | (m << 13)).view(np.float32)
    return -v if h & 0x8000 else v


# -- Q3_K ------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def _make_q3_quants(x, b, off, L, lq):
    """``make_q3_quants(16, 4, x, L, do_rmse=true)``: weights x**2, 5 rounds of coordinate descent."""
    amax, mx = signed_absmax(x[b, off : off + 16])
    if amax < EPS:  # all zero: codes 0 (not 4!) and scale 0
        for i in range(16):
            L[b, off + i] = 0
        return _F(0.0)
    iscale = _F(-4.0) / mx
    sumlx = _F(0.0)
    suml2 = _F(0.0)
    for i in range(16):
        xi = x[b, off + i]
        q = min(max(nearest_int(iscale * xi), -4), 3)
        lq[i] = q
        w = xi * xi
        fl = _F(q)
        sumlx += w * xi * fl
        suml2 += w * fl * fl
    for _itry in range(5):
        n_changed = 0
        for i in range(16):
            xi = x[b, off + i]
            w = xi * xi
            fl = _F(lq[i])
            slx = sumlx - w * xi * fl
            if slx > 0:
                sl2 = suml2 - w * fl * fl
                new_l = min(max(nearest_int(xi * sl2 / slx), -4), 3)
                if new_l != lq[i]:
                    fn = _F(new_l)
                    slx += w * xi * fn
                    sl2 += w * fn * fn
                    if sl2 > 0 and slx * slx * suml2 > sumlx * sumlx * sl2:
                        lq[i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(16):
        L[b, off + i] = lq[i] + 4
    return sumlx / suml2 if suml2 > 0 else _F(0.0)


@njit(cache=True, error_model="numpy")
def q3k_codes(x):
    """``quantize_row_q3_K_ref`` on float32 (n, 256): codes 0..7, 6-bit scales 0..63, fp16 d bits."""
    n = x.shape[0]
    L = np.empty((n, 256), np.uint8)
    sc6 = np.zeros((n, 16), np.uint8)
    dbits = np.zeros(n, np.uint16)
    scales = np.empty(16, np.float32)
    lq = np.empty(16, np.int64)
    for b in range(n):
        for j in range(16):
            scales[j] = _make_q3_quants(x, b, 16 * j, L, lq)
        _, max_scale = signed_absmax(scales)
        if max_scale != 0:
            iscale = _F(-32.0) / max_scale
            for j in range(16):
                q = nearest_int(iscale * scales[j])
                q = ((q + 128) & 0xFF) - 128  # the C stores it in an int8_t before clamping
                sc6[b, j] = min(max(q, -32), 31) + 32
            dbits[b] = fp32_to_fp16_bits(_F(1.0) / iscale)
        # else: scale bytes and d stay 0 (the stored 6-bit scales then decode to -32, times d = 0)
        dd = fp16_bits_to_fp32(dbits[b])
        for j in range(16):
            d = dd * _F(np.int64(sc6[b, j]) - 32)
            if d == 0:  # keeps make_q3_quants' codes
                continue
            for i in range(16):
                q = nearest_int(x[b, 16 * j + i] / d)
                L[b, 16 * j + i] = min(max(q, -4), 3) + 4
    return L, sc6, dbits


# -- Q6_K ------------------------------------------------------------------------------------------
@njit(cache=True, inline="always", error_model="numpy")
def pick_lane(sx, s2):
    """llama.cpp ``make_qx_quants``' choice among its 19 trial scales, replayed from the per-lane
    sums ``sx`` (sum w*x*l) and ``s2`` (sum w*l*l): lane 9 (``is = 0``) first, then a lane wins when
    ``sx^2 / s2`` beats the best so far (C: ``suml2 ? sumlx/suml2 : 0``, NaN counts as true).
    Returns ``(scale, lane)``."""
    scale = sx[9] / s2[9] if s2[9] != 0 else _F(0.0)
    best = scale * sx[9]
    win = 9
    for t in range(19):
        if t != 9 and s2[t] > 0 and sx[t] * sx[t] > best * s2[t]:
            scale = sx[t] / s2[t]
            best = scale * sx[t]
            win = t
    return scale, win


@njit(cache=True, error_model="numpy")
def _make_qx_quants_q6(x, b, off, L, isc, sx, s2):
    """``make_qx_quants(16, 32, x, L, rmse_type=1, NULL)``: weights x**2, first guess
    ``iscale = -32/max`` then 18 trial scales ``-(32 + 0.1*is)/max``, is = -9..9 (is != 0).

    All 19 candidates are accumulated together, one lane each (lane 9 is the first guess, since
    ``-(32 + 0.1f*0)`` is exactly ``-32``): each lane still adds its 16 terms in C's order, so the
    sums are bit-identical, but the lanes vectorise. The C keeps the first candidate unless a later
    one strictly improves ``sumlx**2 / suml2``; that sequential choice is replayed afterwards.
    """
    amax, mx = signed_absmax(x[b, off : off + 16])
    if amax < EPS:
        for i in range(16):
            L[b, off + i] = 0
        return _F(0.0)
    for t in range(_Q6_LANES):
        isc[t] = -(_F(32.0) + _F(0.1) * _F(t - 9)) / mx
        sx[t] = _F(0.0)
        s2[t] = _F(0.0)
    for i in range(16):
        xi = x[b, off + i]
        w = xi * xi
        wx = w * xi
        for t in range(_Q6_LANES):  # lanes 19.. are padding (whole vectors), never read
            fl = _F(min(max(nearest_int(isc[t] * xi), -32), 31))
            sx[t] += wx * fl  # w*x[i]*l == (w*x)*l
            s2[t] += w * fl * fl
    scale, win = pick_lane(sx, s2)
    for i in range(16):
        L[b, off + i] = min(max(nearest_int(isc[win] * x[b, off + i]), -32), 31) + 32
    return scale


@njit(cache=True, error_model="numpy")
def q6k_codes(x):
    """``quantize_row_q6_K_ref`` on float32 (n, 256): codes 0..63, int8 scales, fp16 d bits."""
    n = x.shape[0]
    L = np.empty((n, 256), np.uint8)
    scales = np.empty((n, 16), np.float32)
    isc = np.empty(_Q6_LANES, np.float32)
    sx = np.empty(_Q6_LANES, np.float32)
    s2 = np.empty(_Q6_LANES, np.float32)
    for b in range(n):
        for j in range(16):
            scales[b, j] = _make_qx_quants_q6(x, b, 16 * j, L, isc, sx, s2)
    return q6k_from_scales(x, scales, L)


@njit(cache=True, error_model="numpy")
def q6k_from_scales(x, scales, L):
    """The common tail of ``quantize_row_q6_K_ref`` and ``quantize_row_q6_K_impl`` (imatrix): the
    sub-block ``scales`` (n, 16) -> int8 scales against the largest (signed) one and the fp16
    ``d``, then the codes ``L`` re-derived from the rounded scales. Returns ``L, sc, dbits``."""
    n = x.shape[0]
    sc = np.zeros((n, 16), np.int8)
    dbits = np.zeros(n, np.uint16)
    for b in range(n):
        max_abs, max_scale = signed_absmax(scales[b])
        if max_abs < EPS:  # the whole block is zeroed (codes included)
            for i in range(256):
                L[b, i] = 0
            continue
        iscale = _F(-128.0) / max_scale
        dbits[b] = fp32_to_fp16_bits(_F(1.0) / iscale)
        for j in range(16):
            sc[b, j] = min(127, nearest_int(iscale * scales[b, j]))
        dd = fp16_bits_to_fp32(dbits[b])
        for j in range(16):
            d = dd * _F(sc[b, j])
            if d == 0:  # keeps make_qx_quants' codes
                continue
            for i in range(16):
                q = nearest_int(x[b, 16 * j + i] / d)
                L[b, 16 * j + i] = min(max(q, -32), 31) + 32
    return L, sc, dbits
