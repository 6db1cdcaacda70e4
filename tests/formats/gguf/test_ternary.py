"""TQ1_0 / TQ2_0 against llama.cpp's own bytes and gguf-py.

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
TYPES = ["tq1_0", "tq2_0"]
INPUTS = dict(np.load(DATA / "inputs.npz"))
ORACLE = {t: dict(np.load(DATA / f"{t}.npz")) for t in TYPES}
QK = 256


def qtype(t: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[t.upper()]


def ours(t: str, x) -> bytes:
    return F.get(t).encode(x).to_bytes()


def gguf_bytes(t: str, x: np.ndarray) -> bytes:
    with np.errstate(all="ignore"):  # gguf-py warns where 1/d overflows
        return quantize(np.ascontiguousarray(x, dtype=np.float32), qtype(t)).tobytes()


def assert_decode_matches_gguf(t: str, raw: bytes, shape: tuple[int, ...]) -> None:
    fmt = F.get(t)
    y = fmt.decode(fmt.from_bytes(raw, shape))
    ts = GGML_QUANT_SIZES[qtype(t)][1]
    with np.errstate(all="ignore"):  # an fp16-inf scale times code 0 is NaN
        ref = dequantize(np.frombuffer(raw, np.uint8).reshape(-1, ts), qtype(t)).reshape(shape)
    assert y.dtype == np.float32 and y.shape == shape
    assert np.array_equal(y.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("t", TYPES)
def test_registered_with_ggml_layout(t):
    fmt = F.get(t)
    bs, ts = GGML_QUANT_SIZES[qtype(t)]
    assert fmt.name == t and fmt.family == "gguf" and fmt.ggml_type == qtype(t).value
    assert (fmt.block_size, fmt.bytes_per_block) == (bs, ts) == (QK, {"tq1_0": 54, "tq2_0": 66}[t])
    assert fmt.bits_per_weight == 8 * ts / bs
    assert fmt.description.endswith(f"(llama.cpp {t.upper()})") and ". " not in fmt.description


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("t", TYPES)
def test_oracle_bytes(t, name):
    x = INPUTS[name]
    assert ours(t, x) == ORACLE[t][name].tobytes()
    assert_decode_matches_gguf(t, ORACLE[t][name].tobytes(), x.shape)


def _cases() -> dict[str, object]:
    rng = np.random.default_rng(17)
    return {
        "3d_normal": (rng.standard_normal((2, 3, 512)) * 0.02).astype(np.float32),
        "laplace_1e3": (rng.laplace(size=(3, 768)) * 1e3).astype(np.float32),
        "ternary_like": (rng.integers(-1, 2, (4, 256)) * 0.7 + rng.normal(0, 0.1, (4, 256))).astype(
            np.float32
        ),
        "row_1d": rng.uniform(-1, 1, 1024).astype(np.float32),
        "torch_float16": torch.randn(4, 512, generator=torch.Generator().manual_seed(1)).half(),
        "torch_bfloat16": torch.randn(2, 3, 256, generator=torch.Generator().manual_seed(2)).bfloat16(),
    }


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("t", TYPES)
def test_matches_gguf_py(t, case):
    x = CASES[case]
    x32 = x.float().numpy() if isinstance(x, torch.Tensor) else x
    raw = ours(t, x)
    assert raw == gguf_bytes(t, x32)
    assert_decode_matches_gguf(t, raw, x32.shape)


@pytest.mark.parametrize("t", TYPES)
def test_decode_random_blocks(t):
    """Arbitrary block bytes (including TQ1_0 bytes no encoder writes) decode like gguf-py."""
    rng = np.random.default_rng(3)
    ts = GGML_QUANT_SIZES[qtype(t)][1]
    raw = rng.integers(0, 256, (300, ts), dtype=np.uint8)
    scales = (rng.standard_normal(300) * 10.0 ** rng.integers(-8, 4, 300)).astype(np.float16)
    raw[:, -2:] = scales.view(np.uint8).reshape(-1, 2)
    assert_decode_matches_gguf(t, raw.tobytes(), (6, 50 * QK))


@pytest.mark.parametrize("t", TYPES)
def test_non_contiguous_inputs(t):
    base = torch.randn(512, 8, generator=torch.Generator().manual_seed(5))
    xt = base.T  # (8, 512), not contiguous
    assert not xt.is_contiguous()
    expected = gguf_bytes(t, np.ascontiguousarray(xt.numpy()))
    assert ours(t, xt) == expected
    assert ours(t, base.numpy().T) == expected


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


def _edge_blocks() -> np.ndarray:
    rng = np.random.default_rng(11)
    normal = rng.standard_normal(QK).astype(np.float32)
    outlier = normal * 1e-3
    outlier[100] = -40.0
    rows = [
        np.zeros(QK),
        np.full(QK, 0.3),
        np.full(QK, -7.0),
        outlier,
        normal * 1e-7,
        normal * 1e-38,
        normal * 2e-39,  # denormal max: 1/d still finite
        normal * 1e-42,  # 1/d overflows to inf: every trit 0 (x86 lroundf(inf/NaN) + 1 == 1)
        np.where(np.arange(QK) == 5, 1e-45, 0.0),
        normal * 3e4,
        np.tile([1.0, -1.0, 0.5, -0.5], QK // 4),
    ]
    return np.stack(rows).astype(np.float32)


@pytest.mark.parametrize("t", TYPES)
def test_edge_blocks_match_gguf(t):
    x = _edge_blocks()
    raw = ours(t, x)
    assert raw == gguf_bytes(t, x)
    assert_decode_matches_gguf(t, raw, x.shape)
    assert np.all(F.roundtrip(x, t)[0] == 0)
    neg = np.full((1, QK), -0.0, np.float32)  # amax = MAX(0.0f, fabsf(v)) is +0.0 either way
    assert ours(t, neg) == ours(t, np.zeros_like(neg)) == gguf_bytes(t, neg)


@pytest.mark.parametrize("shape", [(0,), (0, QK), (3, 0), (2, 0, 512)])
@pytest.mark.parametrize("t", TYPES)
def test_empty(t, shape):
    fmt = F.get(t)
    enc = fmt.encode(np.zeros(shape, np.float32))
    assert enc.nbytes == 0 and enc.to_bytes() == b""
    assert fmt.decode(enc).shape == shape
    assert fmt.decode(fmt.from_bytes(b"", shape)).shape == shape


@pytest.mark.parametrize("t", TYPES)
def test_row_length_must_be_whole_blocks(t):
    fmt = F.get(t)
    with pytest.raises(ValueError, match="block size"):
        fmt.encode(np.ones((2, 288), np.float32))
    with pytest.raises(ValueError, match="block size"):
        fmt.from_bytes(bytes(2 * fmt.bytes_per_block), (2, 288))
    with pytest.raises(ValueError, match="bytes"):
        fmt.from_bytes(bytes(fmt.bytes_per_block - 1), (1, QK))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("t", TYPES)
def test_non_finite_rejected(t, bad):
    x = np.ones((2, 512), np.float32)
    x[1, 300] = bad
    with pytest.raises(ValueError, match=rf"{t}: input has 1 non-finite value.*\(1, 300\)"):
        F.get(t).encode(x)


@pytest.mark.parametrize("t", TYPES)
def test_from_bytes_roundtrip(t):
    fmt = F.get(t)
    x = INPUTS["blk.0.ffn_up.weight"][:6].reshape(2, 3, 256)
    enc = fmt.encode(x)
    raw = enc.to_bytes()
    assert enc.nbytes == len(raw) == 6 * fmt.bytes_per_block
    for src in (raw, np.frombuffer(raw, np.uint8)):
        again = fmt.from_bytes(src, x.shape)
        assert again.to_bytes() == raw
        assert np.array_equal(fmt.decode(again), fmt.decode(enc))


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
