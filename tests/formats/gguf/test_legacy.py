"""Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 against llama.cpp's own bytes and gguf-py.

Byte-exactness: ``encode(...).to_bytes()`` must equal the bytes llama.cpp's reference quantizer
wrote (``tests/data/ggml/<type>.npz``) and gguf-py's ``quantize``; ``decode`` must equal gguf-py's
``dequantize`` bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qlab.formats as F

DATA = Path(__file__).resolve().parents[2] / "data" / "ggml"
TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
INPUTS = dict(np.load(DATA / "inputs.npz"))
ORACLE = {t: dict(np.load(DATA / f"{t}.npz")) for t in TYPES}


def qtype(t: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[t.upper()]


def ours(t: str, x) -> bytes:
    return F.get(t).encode(x).to_bytes()


def gguf_bytes(t: str, x: np.ndarray) -> bytes:
    with np.errstate(all="ignore"):  # gguf-py warns where 1/d overflows (its casts then give 0)
        return quantize(np.ascontiguousarray(x, dtype=np.float32), qtype(t)).tobytes()


def assert_decode_matches_gguf(t: str, raw: bytes, shape: tuple[int, ...]) -> None:
    fmt = F.get(t)
    y = fmt.decode(fmt.from_bytes(raw, shape))
    bs, ts = GGML_QUANT_SIZES[qtype(t)]
    with np.errstate(all="ignore"):  # an fp16-inf scale times code 0 is NaN
        ref = dequantize(np.frombuffer(raw, np.uint8).reshape(-1, ts), qtype(t)).reshape(shape)
    assert y.dtype == np.float32 and y.shape == shape
    assert np.array_equal(y.view(np.uint32), ref.view(np.uint32))  # bit for bit, signed zeros too


# -- metadata ------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", TYPES)
def test_registered_with_ggml_layout(t):
    fmt = F.get(t)
    bs, ts = GGML_QUANT_SIZES[qtype(t)]
    assert fmt.name == t and fmt.family == "gguf" and fmt.ggml_type == qtype(t).value
    assert (fmt.block_size, fmt.bytes_per_block) == (bs, ts)
    assert fmt.bits_per_weight == 8 * ts / bs
    assert fmt.description.endswith(f"(llama.cpp {t.upper()})") and ". " not in fmt.description


# -- llama.cpp's bytes ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("t", TYPES)
def test_oracle_bytes(t, name):
    x = INPUTS[name]
    assert ours(t, x) == ORACLE[t][name].tobytes()
    assert_decode_matches_gguf(t, ORACLE[t][name].tobytes(), x.shape)


# -- gguf-py on other tensors --------------------------------------------------------------------
def _cases() -> dict[str, object]:
    rng = np.random.default_rng(7)
    t = rng.standard_t(3, (2, 3, 128)).astype(np.float32)
    t[0, 1, ::41] *= 100  # outliers
    return {
        "3d_normal": (rng.standard_normal((3, 4, 64)) * 0.02).astype(np.float32),
        "laplace_1e3": (rng.laplace(size=(5, 96)) * 1e3).astype(np.float32),
        "student_t_outliers": t,
        "row_1d": rng.uniform(-1, 1, 256).astype(np.float32),
        "torch_float16": torch.randn(8, 128, generator=torch.Generator().manual_seed(1)).half(),
        "torch_bfloat16": torch.randn(4, 2, 64, generator=torch.Generator().manual_seed(2)).bfloat16(),
        "numpy_float16": (rng.standard_normal((6, 32)) * 3).astype(np.float16),
    }


CASES = _cases()


def as_np32(x) -> np.ndarray:
    return x.float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("t", TYPES)
def test_matches_gguf_py(t, case):
    x = CASES[case]
    x32 = as_np32(x)
    raw = ours(t, x)
    assert raw == gguf_bytes(t, x32)
    assert_decode_matches_gguf(t, raw, x32.shape)
    assert np.array_equal(F.roundtrip(x, t), F.get(t).decode(F.get(t).from_bytes(raw, x32.shape)))


@pytest.mark.parametrize("t", TYPES)
def test_decode_random_blocks(t):
    """Arbitrary block bytes (finite fp16 scales/minima) decode like gguf-py's dequantize."""
    rng = np.random.default_rng(3)
    bs, ts = GGML_QUANT_SIZES[qtype(t)]
    raw = rng.integers(0, 256, (500, ts), dtype=np.uint8)
    n_fp16 = 2 if t.endswith("_1") else 1
    halves = (rng.standard_normal((500, n_fp16)) * 10.0 ** rng.integers(-8, 4, (500, n_fp16))).astype(
        np.float16
    )
    raw[:, : 2 * n_fp16] = halves.view(np.uint8)
    assert_decode_matches_gguf(t, raw.tobytes(), (10, 50 * bs))


@pytest.mark.parametrize("t", TYPES)
def test_non_contiguous_inputs(t):
    """A transposed torch view / numpy view quantizes its logical (row-major) values."""
    base = torch.randn(96, 64, generator=torch.Generator().manual_seed(5))
    xt = base.T  # (64, 96), not contiguous
    assert not xt.is_contiguous()
    expected = gguf_bytes(t, np.ascontiguousarray(xt.numpy()))
    assert ours(t, xt) == expected
    assert ours(t, base.numpy().T) == expected


# -- edge cases ----------------------------------------------------------------------------------
def _edge_blocks() -> np.ndarray:
    rng = np.random.default_rng(11)
    normal = rng.standard_normal(32).astype(np.float32)
    outlier = (normal * 1e-3).astype(np.float32)
    outlier[17] = 40.0
    rows = [
        np.zeros(32),  # all zero
        np.full(32, 0.3),  # constant
        np.full(32, -7.0),
        outlier,  # one large value among small ones
        -outlier,
        normal * 1e-7,  # tiny
        normal * 3e-38,  # near FLT_MIN: Q4_0's 1/d overflows
        normal * 2e-39,  # denormal
        normal * 1e-44,
        np.where(np.arange(32) == 5, 1e-45, 0.0),  # one denormal-min value
        normal * 3e4,  # fp16 scale near its top
        np.tile([1.0, -1.0], 16),  # +a / -a tie: the first one gives the sign
        np.tile([-2.0, 2.0, 0.5, 0.0], 8),
        np.arange(-16, 16) * 0.5,  # codes exactly halfway between levels
        np.arange(32) / 127.0 * 2.5,
    ]
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("t", TYPES)
def test_edge_blocks_match_gguf(t):
    x = _edge_blocks()
    raw = ours(t, x)
    assert raw == gguf_bytes(t, x)
    assert_decode_matches_gguf(t, raw, x.shape)
    y = F.roundtrip(x, t)
    assert np.all(y[0] == 0)  # an all-zero block decodes to zeros


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


@pytest.mark.parametrize("shape", [(0,), (0, 32), (3, 0), (2, 0, 64)])
@pytest.mark.parametrize("t", TYPES)
def test_empty(t, shape):
    fmt = F.get(t)
    enc = fmt.encode(np.zeros(shape, np.float32))
    assert enc.nbytes == 0 and enc.to_bytes() == b""
    y = fmt.decode(enc)
    assert y.shape == shape and y.dtype == np.float32
    assert fmt.decode(fmt.from_bytes(b"", shape)).shape == shape


@pytest.mark.parametrize("t", TYPES)
def test_row_length_must_be_whole_blocks(t):
    fmt = F.get(t)
    with pytest.raises(ValueError, match="block size"):
        fmt.encode(np.ones((2, 48), np.float32))
    with pytest.raises(ValueError, match="block size"):
        fmt.encode(np.float32(1.0))
    ts = fmt.bytes_per_block
    with pytest.raises(ValueError, match="block size"):
        fmt.from_bytes(bytes(3 * ts), (2, 48))
    with pytest.raises(ValueError, match="bytes"):
        fmt.from_bytes(bytes(ts + 1), (1, 32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("t", TYPES)
def test_non_finite_rejected(t, bad):
    x = np.ones((3, 64), np.float32)
    x[2, 40] = bad
    with pytest.raises(ValueError, match=rf"{t}: input has 1 non-finite value.*\(2, 40\)"):
        F.get(t).encode(x)


@pytest.mark.parametrize("t", TYPES)
def test_from_bytes_roundtrip(t):
    fmt = F.get(t)
    x = INPUTS["blk.0.attn_v.weight"][:8].reshape(2, 4, 256)
    enc = fmt.encode(x)
    raw = enc.to_bytes()
    assert enc.nbytes == len(raw) == x.size // fmt.block_size * fmt.bytes_per_block
    for src in (raw, bytearray(raw), np.frombuffer(raw, np.uint8)):
        again = fmt.from_bytes(src, x.shape)
        assert again.to_bytes() == raw and again.shape == x.shape
        assert np.array_equal(fmt.decode(again), fmt.decode(enc))


@pytest.mark.parametrize("t", TYPES)
def test_unknown_option_rejected(t):
    with pytest.raises(ValueError, match="unknown option"):
        F.get(t).encode(np.zeros((1, 32), np.float32), block_size=64)


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
        fp16_err = lev * np.abs(d - d.astype(np.float16)) + np.abs(lo - lo.astype(np.float16))
    else:
        d = (np.abs(x).max(1).astype(np.float32) / np.float32(lev)).astype(np.float64)
        fp16_err = lev * np.abs(d - d.astype(np.float16))
    return d[:, None], fp16_err[:, None], np.abs(x).max(1)[:, None]


@settings(max_examples=60, deadline=None)
@given(x=blocks_strategy, t=st.sampled_from(TYPES))
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
