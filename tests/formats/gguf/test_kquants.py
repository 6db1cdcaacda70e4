"""Q2_K / Q4_K / Q5_K: the numpy ``nearest_int`` and the error bound of the re-derived codes,
read back from the block bytes independently of the codec. The byte-exactness checks every GGML
type shares (llama.cpp's own bytes, llama.cpp's library via ctypes, gguf-py's ``dequantize``, the
codec contract) are in ``test_oracle.py``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qlab.formats as F
from qlab.formats.gguf.kquants_type1 import nearest_int

from ._oracle import gguf_decode

NAMES = ["q2_k", "q4_k", "q5_k"]
NMAX = {"q2_k": 3, "q4_k": 15, "q5_k": 31}
EPS = float(np.finfo(np.float32).eps)


def step_and_offset(name: str, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per value (n, 256): the sub-block step ``d*sc`` and offset ``dmin*m``, read from the bytes
    following ggml-common.h's block structs and ``get_scale_min_k4`` (written out independently
    of the codec)."""
    n = raw.shape[0]
    if name == "q2_k":
        sc, m = raw[:, :16] & 0xF, raw[:, :16] >> 4
        d16, dmin16 = raw[:, 80:82], raw[:, 82:84]
    else:
        s = raw[:, 4:16].astype(np.int32)
        sc = np.zeros((n, 8), np.int32)
        m = np.zeros((n, 8), np.int32)
        for j in range(8):  # the 8 sub-block positions of get_scale_min_k4
            if j < 4:
                sc[:, j], m[:, j] = s[:, j] & 63, s[:, j + 4] & 63
            else:
                sc[:, j] = (s[:, j + 4] & 0xF) | ((s[:, j - 4] >> 6) << 4)
                m[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
        d16, dmin16 = raw[:, 0:2], raw[:, 2:4]
    d = np.ascontiguousarray(d16).view(np.float16).astype(np.float32) * sc.astype(np.float32)
    dm = np.ascontiguousarray(dmin16).view(np.float16).astype(np.float32) * m.astype(np.float32)
    rep = 256 // sc.shape[1]
    return np.repeat(d, rep, axis=1), np.repeat(dm, rep, axis=1)


def test_nearest_int_is_round_half_even() -> None:
    v = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999998, 7.0, -0.0, 4194302.5, -4194302.5], np.float32)
    assert nearest_int(v).tolist() == np.rint(v).astype(int).tolist()


finite32 = st.floats(-1e4, 1e4, width=32, allow_subnormal=True)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float32, (2, 256), elements=finite32),
    scale=st.sampled_from([1.0, 1e-6, 1e-3, 0.25, 37.0]),
)
def test_error_bounded_by_step(name: str, x: np.ndarray, scale: float) -> None:
    """The codes are re-derived by rounding (x + dm)/d to nearest with the *stored* scales, so
    an interior code is within half a step of x, and a clamped code means x lies beyond the
    last half step. (Sub-blocks whose 4/6-bit scale rounds to 0 keep the search's codes.)"""
    fmt = F.get(name)
    x = (x * np.float32(scale)).astype(np.float32)
    enc = fmt.encode(x)
    y = fmt.decode(enc)
    raw = enc.parts["blocks"]
    assert np.array_equal(y.ravel(), gguf_decode(name, raw))
    d, dm = step_and_offset(name, raw)
    x, y = x.reshape(d.shape), y.reshape(d.shape)
    live = d > 0
    q = np.where(live, np.rint((y + dm) / np.where(live, d, 1)), 0)
    tol = 4 * EPS * (np.abs(x) + np.abs(dm) + np.abs(y) + d) + 1e-40
    half = 0.5 * d + tol
    inner = live & (q > 0) & (q < NMAX[name])
    assert np.all(np.abs(x - y)[inner] <= half[inner])
    assert np.all((x <= y + half)[live & (q == 0)])
    assert np.all((x >= y - half)[live & (q == NMAX[name])])
