"""The SIMD-lane ``make_qkx3_quants`` (:mod:`qlab.formats.gguf._qkx_lanes`, the imatrix search of
Q2_K/Q4_K/Q5_K) against the scalar one-sub-block search :func:`._kq_kernels._make_qkx2`, which
``test_imatrix.py`` / ``test_oracle.py`` check against llama.cpp's bytes: same codes, same scale
and min bits, lane by lane, on sub-blocks that reach every branch (flat, all zero, one value,
ties, huge and tiny magnitudes, infinite weights) and for group sizes that leave padded lanes.
The end-to-end bytes against llama.cpp itself are in ``test_imatrix.py``."""

from __future__ import annotations

import numpy as np
import pytest

from qlab.formats.gguf._kq_kernels import _make_qkx2
from qlab.formats.gguf._qkx_lanes import LC, NL, SCALE, THE_MIN, WT, XT, lane_buffer, qkx3_lanes

_F = np.float32
RMIN, RDELTA, NSTEP = _F(-0.9), _F(0.05), 36  # quantize_row_q{2,4,5}_K_impl's make_qkx3_quants call


def sub_blocks(n: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` sub-blocks of ``n`` float32 values and positive weights, a mix of the cases."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, n)).astype(np.float32)
    w = np.exp(rng.normal(0, 2, (count, n))).astype(np.float32)
    x[0::11] = 0  # all zero: flat
    x[1::11] = -0.75  # negative constant: flat (max == min)
    x[2::11] = 0.5  # positive constant: min clamped to 0, not flat
    x[3::11, 1:] = 0  # one value
    x[4::11] = np.round(x[4::11] * 2) / 2  # ties
    x[5::11] *= _F(1e12)
    x[6::11] *= _F(1e-12)
    x[7::11] = np.abs(x[7::11])
    x[8::11] = -np.abs(x[8::11])
    w[9::11, 3] = np.inf  # an overflowed weight (|x| ~ 1e19 makes sqrt(sigma2 + x*x) infinite)
    w[10::11] = np.where(rng.random((len(w[10::11]), n)) < 0.2, 1e6, 1e-6)
    return x, w


def scalar(x: np.ndarray, w: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    L = np.empty(x.shape, np.uint8)
    scale = np.empty(len(x), np.float32)
    the_min = np.empty(len(x), np.float32)
    n = x.shape[1]
    Laux, tmp = np.empty(n, np.uint8), np.empty(n, np.float32)
    for b in range(len(x)):
        scale[b], the_min[b] = _make_qkx2(x[b], w[b], L[b], Laux, tmp, nmax, RMIN, RDELTA, NSTEP, False)
    return L, scale, the_min


def lanes(x: np.ndarray, w: np.ndarray, nmax: int, nl: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Groups of ``nl`` sub-blocks, the last padded with zeros (as ``kquant1_imatrix`` does)."""
    count, n = x.shape
    L = np.empty(x.shape, np.uint8)
    scale = np.empty(count, np.float32)
    the_min = np.empty(count, np.float32)
    for g in range(0, count, nl):
        m = min(nl, count - g)
        a = lane_buffer(nl)
        rows = a.reshape(-1, nl)
        rows[XT : XT + n, :m] = x[g : g + m].T
        rows[WT : WT + n, :m] = w[g : g + m].T
        qkx3_lanes(a, nl, n, nmax, RMIN, RDELTA, NSTEP)
        L[g : g + m] = rows[LC : LC + n, :m].T.astype(np.uint8)
        scale[g : g + m] = rows[SCALE, :m]
        the_min[g : g + m] = rows[THE_MIN, :m]
    return L, scale, the_min


def bits(v: np.ndarray) -> np.ndarray:
    return v.view(np.uint32)


@pytest.mark.parametrize(("n", "nmax"), [(16, 3), (32, 15), (32, 31)])
@pytest.mark.parametrize("nl", [NL, 13, 1])
def test_lanes_equal_scalar_search(n: int, nmax: int, nl: int) -> None:
    x, w = sub_blocks(n, 3 * NL + 5, seed=n + nmax)
    with np.errstate(all="ignore"):
        ref = scalar(x, w, nmax)
        got = lanes(x, w, nmax, nl)
    assert np.array_equal(got[0], ref[0])
    assert np.array_equal(bits(got[1]), bits(ref[1]))  # -0.0 and NaN payloads included
    assert np.array_equal(bits(got[2]), bits(ref[2]))
    assert (ref[1] == 0).any() and (ref[1] != 0).any() and (ref[0] == nmax).any()  # the cases occur
