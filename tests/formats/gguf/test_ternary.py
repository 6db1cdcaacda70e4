"""TQ1_0 / TQ2_0: the packing and rounding quirks of llama.cpp's reference quantizers and the
properties of the formats. The byte-exactness checks every GGML type shares (llama.cpp's own
bytes, llama.cpp's library, gguf-py's ``quantize``/``dequantize``, the codec contract) are in
``test_oracle.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qlab.formats as F

from ._oracle import TERNARY as TYPES
from ._oracle import gguf_bytes, ours

QK = 256


@pytest.mark.parametrize("t", TYPES)
def test_element_order(t):
    """Each position of a block decodes back to itself (TQ1_0's 5-trits-per-byte order included)."""
    x = np.zeros((QK, QK), np.float32)
    signs = np.where(np.arange(QK) % 2, -1.0, 1.0).astype(np.float32)
    x[np.arange(QK), np.arange(QK)] = signs * 3.0  # block i has one non-zero value at position i
    y = F.roundtrip(x, t)
    assert np.array_equal(y, x)
    assert ours(t, x) == gguf_bytes(t, x)


def test_tq1_0_packing_quirks():
    """5 trits per byte as ceil(q * 256/243); qh holds 4 trits moved up one place (x3)."""
    fmt = F.get("tq1_0")
    ones = np.full((1, QK), 2.0, np.float32)  # every trit +1, stored as 2: q = 242 -> 255
    b = fmt.encode(ones).parts["blocks"][0]
    assert np.all(b[:48] == 255) and np.all(b[48:52] == (240 * 256 + 242) // 243)
    zeros = np.zeros((1, QK), np.float32)  # every trit 0, stored 1: q = 121 -> 128; qh 120 -> 127
    b = fmt.encode(zeros).parts["blocks"][0]
    assert np.all(b[:48] == 128) and np.all(b[48:52] == 127) and b[52:].tobytes() == b"\0\0"


@pytest.mark.parametrize("t", TYPES)
def test_rounding_is_half_away_from_zero(t):
    """``lroundf(x * id)``: exactly +-0.5 of the scale rounds away from zero; just below does not."""
    x = np.zeros((1, QK), np.float32)
    x[0, :6] = [1.0, 0.5, -0.5, np.nextafter(np.float32(0.5), 0), -0.25, -1.0]
    y = F.roundtrip(x, t)[0, :6]
    assert y.tolist() == [1.0, 1.0, -1.0, 0.0, 0.0, -1.0]
    assert ours(t, x) == gguf_bytes(t, x)


@pytest.mark.parametrize("t", TYPES)
def test_negative_zero_block(t):
    """``amax = MAX(0.0f, fabsf(v))`` is +0.0 for an all -0.0 block too."""
    neg = np.full((1, QK), -0.0, np.float32)
    assert ours(t, neg) == ours(t, np.zeros_like(neg)) == gguf_bytes(t, neg)


blocks_strategy = st.integers(1, 3).flatmap(
    lambda n: hnp.arrays(np.float32, (n, QK), elements=st.floats(-1e4, 1e4, width=32, allow_subnormal=True))
)


@settings(max_examples=40, deadline=None)
@given(x=blocks_strategy, t=st.sampled_from(TYPES))
def test_error_within_half_step(t, x):
    """The step is the block's absmax ``d``: |x - y| <= d/2 (+ fp16 rounding of d)."""
    y = F.roundtrip(x, t).astype(np.float64)
    d = np.abs(x.astype(np.float64)).max(1, keepdims=True)
    fp16_err = np.abs(d - d.astype(np.float32).astype(np.float16))
    assert np.all(np.abs(x - y) <= 0.5 * d * (1 + 1e-6) + fp16_err)


@settings(max_examples=40, deadline=None)
@given(x=blocks_strategy, t=st.sampled_from(TYPES))
def test_requantizing_is_idempotent(t, x):
    """Ternary values ``{-1, 0, 1} * d16`` re-encode to the same bytes when ``d16 != 0``."""
    fmt = F.get(t)
    enc = fmt.encode(x)
    y = fmt.decode(enc)
    ok = enc.parts["blocks"][:, -2:].view(np.float16)[:, 0] != 0
    assert np.array_equal(fmt.encode(y).parts["blocks"][ok], enc.parts["blocks"][ok])
    assert np.array_equal(F.roundtrip(y, t), y)
