"""IQ4_NL / IQ4_XS: the all-zero block quirks and the nearest-level property, with the block
steps read back from the bytes. The byte-exactness checks every GGML type shares (llama.cpp's own
bytes, llama.cpp's library via ctypes, gguf-py's ``dequantize``, the codec contract) are in
``test_oracle.py``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qlab.formats as F

NAMES = ["iq4_nl", "iq4_xs"]
KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_zero_blocks(name: str) -> None:
    """All-zero input: IQ4_NL stores d = +0 and code 8 (level +1); IQ4_XS stores d = -0.0
    (``-max_scale/32`` with max_scale 0) and every block scale code 32."""
    fmt = F.get(name)
    raw = fmt.encode(np.zeros((1, 256), np.float32)).parts["blocks"]
    assert np.all(raw[:, -16:] == 0x88)
    if name == "iq4_xs":
        assert raw[0, :8].tolist() == [0x00, 0x80, 0xAA, 0xAA, 0, 0, 0, 0]
    else:
        assert np.all(raw[:, :2] == 0)
    assert np.all(fmt.decode(fmt.encode(np.zeros((1, 256), np.float32))) == 0)


def block_steps(name: str, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 32-value block: decoded step (``d`` or ``d * (scale - 32)``) and the integer block
    scale multiplier (1 for IQ4_NL)."""
    fmt = F.get(name)
    ones = raw.copy()
    ones[:, -(fmt.type_size - (2 if name == "iq4_nl" else 8)) :] = 0x88  # code 8 = level +1
    step = fmt.dequantize_blocks(ones).reshape(-1, 32)[:, :1]
    if name == "iq4_nl":
        return step, np.ones_like(step)
    d = np.repeat(np.ascontiguousarray(raw[:, :2]).view(np.float16).astype(np.float32), 8, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return step, np.where(d != 0, np.abs(step / d), 32)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float32, (2, 256), elements=st.floats(-1e3, 1e3, width=32, allow_subnormal=False)),
    scale=st.sampled_from([1e-3, 1.0, 50.0]),
)
def test_nearest_level(name: str, x: np.ndarray, scale: float) -> None:
    """Each value decodes to the nearest of its block's 16 levels ``step * kvalues`` (which bounds
    the error by half the widest level gap, 12 steps, inside the grid), up to the fp16 rounding
    of ``d``: codes are chosen with the unrounded scale, so allow ``2 * 127 * |d - fp16(d)|``."""
    fmt = F.get(name)
    x = (x * np.float32(scale)).astype(np.float32)
    raw = fmt.encode(x).parts["blocks"]
    y = fmt.dequantize_blocks(raw).reshape(-1, 32)
    step, mult = block_steps(name, raw)
    xs = x.reshape(-1, 32)
    err = np.abs(xs.astype(np.float64) - y)
    nearest = np.abs(xs[:, :, None].astype(np.float64) - step[:, :, None] * KVALUES).min(axis=-1)
    # |d - fp16(d)| <= max(|d| * 2**-11, 2**-25); times the block multiplier and the largest level
    fp16_slack = np.maximum(np.abs(step) * 2.0**-11, mult * 2.0**-25) * 127 * 2 * 1.01
    ok = err <= nearest + fp16_slack + np.abs(xs) * 1e-6
    ok |= (step == 0) & (y == 0)
    assert ok.all()
    inside = (xs / np.where(step == 0, 1, step) > -127) & (xs / np.where(step == 0, 1, step) < 113)
    assert ((err <= 12 * np.abs(step) + fp16_slack + 1e-6 * np.abs(xs)) | ~inside | (step == 0)).all()
