"""Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0: the quirks of llama.cpp's reference quantizers and the
properties of the formats. The byte-exactness checks every GGML type shares (llama.cpp's own
bytes, llama.cpp's library, gguf-py's ``quantize``/``dequantize``, the codec contract) are in
``test_oracle.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qlab.formats as F

from ._oracle import LEGACY as TYPES
from ._oracle import gguf_bytes, ours


@pytest.mark.parametrize("t", TYPES)
def test_signed_zero_blocks_follow_c(t):
    """Where gguf-py's numpy max/min pick a different zero than the C loops do.

    ``quantize_row_q4_0_ref`` starts from ``max = 0.0f`` and only replaces it on a strictly
    larger magnitude, so an all -0.0 block stores the same ``d = 0.0f/-8 = -0.0`` as an all +0.0
    one (gguf-py takes the block's first element and stores +0.0). The ``_1`` types keep the
    *first* zero as ``min`` (``if (v < min)``), so ``m`` carries that zero's sign.
    """
    fmt = F.get(t)
    pos, neg = np.zeros((1, 32), np.float32), np.full((1, 32), -0.0, np.float32)
    pos_first, neg_first = neg.copy(), pos.copy()
    pos_first[0, 0], neg_first[0, 0] = 0.0, -0.0
    if t.endswith("_1"):
        for x, m_bits in ((pos, 0x0000), (neg, 0x8000), (pos_first, 0x0000), (neg_first, 0x8000)):
            blocks = fmt.encode(x).parts["blocks"]
            assert blocks[0, 2:4].view(np.uint16)[0] == m_bits
            assert blocks[0, 0:2].view(np.uint16)[0] == 0  # d = (max - min)/n = +0
        assert ours(t, pos) == gguf_bytes(t, pos)
    else:
        assert ours(t, neg) == ours(t, pos) == gguf_bytes(t, pos)
        assert ours(t, pos_first) == ours(t, pos)


# -- properties ----------------------------------------------------------------------------------
LEVELS = {"q4_0": 8, "q5_0": 16, "q8_0": 127, "q4_1": 15, "q5_1": 31}

blocks_strategy = st.integers(1, 4).flatmap(
    lambda n: hnp.arrays(
        np.float32,
        (n, 32),
        elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=True),
    )
)


def _step_and_fp16_error(t: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block (float64): the step ``d`` the reference computes, the largest code magnitude,
    and the decoder's error from storing ``d`` (and ``m``) in fp16."""
    x = x.astype(np.float64)
    lev = LEVELS[t]
    if t.endswith("_1"):
        lo, hi = x.min(1), x.max(1)
        d = ((hi.astype(np.float32) - lo.astype(np.float32)) / np.float32(lev)).astype(np.float64)
        exact = (hi - lo) / lev  # the scale before float32 and fp16 rounding (both may underflow to 0)
        fp16_err = lev * np.abs(exact - d.astype(np.float16)) + np.abs(lo - lo.astype(np.float16))
    else:
        d = (np.abs(x).max(1).astype(np.float32) / np.float32(lev)).astype(np.float64)
        exact = np.abs(x).max(1) / lev  # e.g. a block of 1e-45: d underflows to 0 and decodes to 0
        fp16_err = lev * np.abs(exact - d.astype(np.float16))
    return d[:, None], fp16_err[:, None], np.abs(x).max(1)[:, None]


@settings(max_examples=60, deadline=None)
@given(x=blocks_strategy, t=st.sampled_from(TYPES))
@example(x=np.full((1, 32), 1e-45, np.float32), t="q4_0")  # the scale underflows to 0 (as in llama.cpp)
def test_error_within_half_step(t, x):
    """|x - decode(encode(x))| <= step/2 (+ the fp16 rounding of the stored scale); Q4_0/Q5_0's
    value opposite the max (code +2^(b-1), clamped one level down) may be a full step off."""
    y = F.roundtrip(x, t).astype(np.float64)
    d, fp16_err, amax = _step_and_fp16_error(t, x)
    half = np.full(x.shape, 0.5)
    if t in ("q4_0", "q5_0"):
        half[np.abs(x) >= (LEVELS[t] - 0.5) * d * (1 - 1e-6)] = 1.0
    bound = half * d + fp16_err + 1e-6 * (amax + d)
    assert np.all(np.abs(x - y) <= bound)


@settings(max_examples=60, deadline=None)
@given(x=blocks_strategy, t=st.sampled_from(["q4_0", "q5_0", "q8_0"]))
def test_requantizing_is_idempotent(t, x):
    """Decoded values re-encode to the same bytes (for blocks whose fp16 scale is non-zero):
    the max maps back to the same scale exactly, and every value to its own code.
    (Not true for Q4_1/Q5_1: ``15*d + m`` rounds, so the re-derived ``d`` can move.)"""
    fmt = F.get(t)
    enc = fmt.encode(x)
    y = fmt.decode(enc)
    again = fmt.encode(y).parts["blocks"]
    ok = enc.parts["blocks"][:, :2].view(np.float16)[:, 0] != 0
    assert np.array_equal(again[ok], enc.parts["blocks"][ok])
    assert np.array_equal(fmt.decode(fmt.encode(y)), y)
