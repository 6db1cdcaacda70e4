"""Q3_K / Q6_K: each value is rounded to its sub-block step unless clamped, with the step read
back from the block bytes. The byte-exactness checks every GGML type shares (llama.cpp's own
bytes, llama.cpp's library via ctypes, gguf-py's ``dequantize``, the codec contract) are in
``test_oracle.py``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qlab.formats as F

NAMES = ["q3_k", "q6_k"]
# value range of the codes after the offset is removed: Q3_K -4..3, Q6_K -32..31
CODE_RANGE = {"q3_k": (-4, 3), "q6_k": (-32, 31)}


def sub_block_steps(name: str, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 16-value sub-block: the decoded step ``d * scale`` and the signed codes."""
    fmt = F.get(name)
    y = fmt.dequantize_blocks(raw).reshape(-1, 16, 16)
    # decode a block whose codes are all +1 to read the step back (bit-exact by construction)
    ones = raw.copy()
    if name == "q3_k":
        ones[:, 0:32] = 0xFF  # high bit set -> no -4 offset
        ones[:, 32:96] = 0x55  # every 2-bit code = 1
    else:
        ones[:, 0:128] = 0x11  # low nibbles 1, high bits 2 -> code 33 - 32 = 1
        ones[:, 128:192] = 0xAA
    step = fmt.dequantize_blocks(ones).reshape(-1, 16, 16)[:, :, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        codes = np.where(step != 0, y / step, 0)
    return step, codes


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float32, (2, 256), elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False)),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
)
def test_error_within_half_a_step(name: str, x: np.ndarray, scale: float) -> None:
    """Each value is rounded to the nearest multiple of its sub-block step ``d*scale`` unless it
    lies beyond the clamped code range; a sub-block with a zero step decodes to zeros."""
    fmt = F.get(name)
    x = (x * np.float32(scale)).astype(np.float32)
    raw = fmt.encode(x).parts["blocks"]
    y = fmt.dequantize_blocks(raw).reshape(-1, 16, 16)
    step, codes = sub_block_steps(name, raw)
    xs = x.reshape(-1, 16, 16)
    lo, hi = CODE_RANGE[name]
    err = np.abs(xs - y)
    bound = 0.5 * np.abs(step) * (1 + 1e-5) + 1e-30
    clamped_hi = (np.rint(codes) == hi) & (xs / np.where(step == 0, 1, step) > hi)
    clamped_lo = (np.rint(codes) == lo) & (xs / np.where(step == 0, 1, step) < lo)
    ok = (err <= bound) | clamped_hi | clamped_lo
    ok |= (step == 0) & (y == 0)
    assert ok.all()
