"""Q3_K / Q6_K against llama.cpp's own bytes (tests/data/ggml, written by ``llama_model_quantize``
without an importance matrix) and against gguf-py's reference dequantizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qlab.formats as F

DATA = Path(__file__).resolve().parents[2] / "data" / "ggml"
INPUTS = dict(np.load(DATA / "inputs.npz"))
NAMES = ["q3_k", "q6_k"]
# value range of the codes after the offset is removed: Q3_K -4..3, Q6_K -32..31
CODE_RANGE = {"q3_k": (-4, 3), "q6_k": (-32, 31)}


def oracle(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(DATA / f"{name}.npz"))


def gguf_decode(name: str, raw: np.ndarray) -> np.ndarray:
    return dequantize(np.asarray(raw, np.uint8).ravel(), GGMLQuantizationType[name.upper()]).ravel()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("matrix", sorted(INPUTS))
def test_encode_matches_llama_cpp_bytes(name: str, matrix: str) -> None:
    got = F.get(name).encode(INPUTS[matrix]).to_bytes()
    want = oracle(name)[matrix]
    assert np.array_equal(np.frombuffer(got, np.uint8), want)


@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_gguf_on_oracle_bytes(name: str) -> None:
    fmt = F.get(name)
    for matrix, raw in oracle(name).items():
        y = fmt.decode(fmt.from_bytes(raw, INPUTS[matrix].shape))
        assert y.shape == INPUTS[matrix].shape
        assert np.array_equal(y.ravel(), gguf_decode(name, raw))


@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_gguf_on_random_data_and_bytes(name: str) -> None:
    fmt = F.get(name)
    rng = np.random.default_rng(1)
    x = (rng.standard_t(3, size=(8, 512)) * rng.uniform(1e-3, 1e2, size=(8, 1))).astype(np.float32)
    enc = fmt.encode(x)
    assert np.array_equal(fmt.decode(enc).ravel(), gguf_decode(name, enc.parts["blocks"]))
    # arbitrary bytes too (finite fp16 d, every code and scale pattern)
    raw = rng.integers(0, 256, size=(64, fmt.type_size), dtype=np.uint8)
    raw[:, -1] &= 0x3B  # keep the fp16 exponent below 31 (no inf/NaN super-scale)
    y = fmt.decode(fmt.from_bytes(raw, (64, 256)))
    assert np.array_equal(y.ravel(), gguf_decode(name, raw))


@pytest.mark.parametrize("name", NAMES)
def test_from_bytes_round_trip_and_size(name: str) -> None:
    fmt = F.get(name)
    x = np.random.default_rng(2).standard_normal((3, 4, 256)).astype(np.float32)
    enc = fmt.encode(x)
    assert enc.nbytes == 12 * fmt.type_size == len(enc.to_bytes())
    again = fmt.from_bytes(enc.to_bytes(), x.shape)
    assert np.array_equal(fmt.decode(again), fmt.decode(enc))
    assert fmt.decode(enc).shape == x.shape
    with pytest.raises(ValueError):
        fmt.from_bytes(enc.to_bytes()[:-1], x.shape)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input(name: str) -> None:
    fmt = F.get(name)
    with pytest.raises(ValueError, match="multiple"):
        fmt.encode(np.zeros((2, 128), np.float32))
    x = np.zeros((1, 256), np.float32)
    x[0, 7] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        fmt.encode(x)
    x[0, 7] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        fmt.encode(x)


@pytest.mark.parametrize("name", NAMES)
def test_empty(name: str) -> None:
    fmt = F.get(name)
    for shape in [(0, 256), (0,)]:
        enc = fmt.encode(np.zeros(shape, np.float32))
        assert enc.nbytes == 0 and enc.to_bytes() == b""
        assert fmt.decode(enc).shape == shape


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_half_inputs(name: str, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    t = torch.randn(4, 256, dtype=getattr(torch, dtype))
    fmt = F.get(name)
    assert fmt.encode(t).to_bytes() == fmt.encode(t.float().numpy()).to_bytes()


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
