"""Every GGML type against the references (see :mod:`._oracle`): llama.cpp's own bytes on the
committed matrices, llama.cpp's library on adversarial data, gguf-py's ``dequantize`` bit for bit
(and its ``quantize`` where it has one), plus the contract every GGML codec shares: layout, the
``from_bytes`` round trip, empty arrays, half-precision and non-contiguous inputs, bad input.
The type-specific quirks and properties are in ``test_<module>.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf.constants import GGML_QUANT_SIZES

import qlab.formats as F

from ._oracle import (
    GGUF_PY_QUANTIZES,
    INPUTS,
    LEGACY,
    TERNARY,
    TYPES,
    assert_decode_matches_gguf,
    gguf_bytes,
    gguf_decode,
    llama_cpp_bytes,
    oracle,
    ours,
    qtype,
)

#: (values, bytes) per block, written out from ggml-common.h's block structs
SIZES = {
    "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22), "q5_1": (32, 24), "q8_0": (32, 34),
    "q2_k": (256, 84), "q3_k": (256, 110), "q4_k": (256, 144), "q5_k": (256, 176), "q6_k": (256, 210),
    "iq4_nl": (32, 18), "iq4_xs": (256, 136), "tq1_0": (256, 54), "tq2_0": (256, 66),
}  # fmt: skip


def fp16_fields(t: str) -> list[int]:
    """Byte offsets of the fp16 scales in a block (from the layout's named parts)."""
    parts = F.get(t).layout().parts
    offsets = np.cumsum([0] + [n for _, n in parts])
    return [int(o) for o, (name, _) in zip(offsets, parts, strict=False) if "fp16" in name]


@pytest.mark.parametrize("t", TYPES)
def test_registered_with_ggml_layout(t):
    fmt = F.get(t)
    bs, ts = GGML_QUANT_SIZES[qtype(t)]
    assert fmt.name == t and fmt.family == "gguf" and fmt.ggml_type == qtype(t).value
    assert (fmt.block_size, fmt.bytes_per_block) == (bs, ts) == SIZES[t]
    assert fmt.type_size == ts and fmt.bits_per_weight == 8 * ts / bs
    assert ". " not in fmt.description  # one short sentence
    if t in LEGACY + TERNARY:
        assert fmt.description.endswith(f"(llama.cpp {t.upper()})")


# -- llama.cpp's bytes ---------------------------------------------------------------------------
@pytest.mark.parametrize("matrix", sorted(INPUTS))
@pytest.mark.parametrize("t", TYPES)
def test_oracle_bytes(t, matrix):
    """encode == llama.cpp's bytes; decoding those bytes == gguf-py's dequantize, bit for bit."""
    x, want = INPUTS[matrix], oracle(t)[matrix]
    assert ours(t, x) == want.tobytes()
    assert_decode_matches_gguf(t, want.tobytes(), x.shape)


def _adversarial(rng: np.random.Generator, rows: int) -> np.ndarray:
    parts = [
        rng.standard_normal((rows, 256)),
        rng.standard_t(2, (rows, 256)) * 10.0 ** rng.integers(-8, 5, (rows, 1)),
        np.round(rng.standard_normal((rows, 256)) * 4) / 4,  # grid values: rounding ties
        np.where(rng.random((rows, 256)) < 0.7, 0, rng.standard_normal((rows, 256))),
        np.abs(rng.standard_normal((rows, 256))) + rng.integers(0, 3, (rows, 1)),
        -np.abs(rng.standard_normal((rows, 256))) - 5 * rng.integers(0, 3, (rows, 1)),
        np.repeat(rng.standard_normal((rows, 16)), 16, axis=1),  # constant sub-blocks
        rng.standard_normal((rows, 256)) * 2.0**-20,  # fp16-subnormal super-block scales
        rng.standard_normal((rows, 256)) * 1e-42,  # float32-subnormal inputs
        rng.standard_normal((rows, 256)) * 1e37,  # overflowing sums and scales
    ]
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.parametrize("t", TYPES)
def test_encode_matches_llama_cpp_library(t):
    """Random and adversarial data the committed oracle does not cover, against libggml's
    ``ggml_quantize_chunk`` (needs llama-cpp-python; skipped without it)."""
    x = _adversarial(np.random.default_rng(3), 40)
    with np.errstate(all="ignore"):
        assert ours(t, x) == llama_cpp_bytes(t, x)


# -- gguf-py ---------------------------------------------------------------------------------------
def _cases_32() -> dict[str, object]:
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


def _cases_256() -> dict[str, object]:
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


def _edge_32() -> np.ndarray:
    """Legacy corner cases, one 32-value block each."""
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


def _edge_256() -> np.ndarray:
    """Ternary corner cases, one 256-value block each."""
    rng = np.random.default_rng(11)
    normal = rng.standard_normal(256).astype(np.float32)
    outlier = normal * 1e-3
    outlier[100] = -40.0
    rows = [
        np.zeros(256),
        np.full(256, 0.3),
        np.full(256, -7.0),
        outlier,
        normal * 1e-7,
        normal * 1e-38,
        normal * 2e-39,  # denormal max: 1/d still finite
        normal * 1e-42,  # 1/d overflows to inf: every trit 0 (x86 lroundf(inf/NaN) + 1 == 1)
        np.where(np.arange(256) == 5, 1e-45, 0.0),
        normal * 3e4,
        np.tile([1.0, -1.0, 0.5, -0.5], 64),
    ]
    return np.stack(rows).astype(np.float32)


CASES = {
    **{f"a_{k}": v for k, v in _cases_32().items()},
    "a_edge_blocks": _edge_32(),
    **{f"b_{k}": v for k, v in _cases_256().items()},
    "b_edge_blocks": _edge_256(),
}


def as_np32(x) -> np.ndarray:
    return x.float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, np.float32)


@pytest.mark.parametrize(
    "t, case",
    [(t, c) for t in GGUF_PY_QUANTIZES for c in sorted(CASES) if CASES[c].shape[-1] % SIZES[t][0] == 0],
)
def test_matches_gguf_py(t, case):
    x = CASES[case]
    x32 = as_np32(x)
    raw = ours(t, x)
    assert raw == gguf_bytes(t, x32)
    assert_decode_matches_gguf(t, raw, x32.shape)
    with np.errstate(all="ignore"):  # an fp16-inf scale times code 0 is NaN: compare the bits
        y, again = F.roundtrip(x, t, overflow="inf"), F.get(t).decode(F.get(t).from_bytes(raw, x32.shape))
    assert np.array_equal(y.view(np.uint32), again.view(np.uint32))


def _encoded_data() -> dict[str, np.ndarray]:
    out = {}
    for name in ("standard_t", "laplace"):
        rng = np.random.default_rng(1)
        v = rng.standard_t(3, size=(8, 512)) if name == "standard_t" else rng.laplace(size=(8, 512))
        out[name] = (v * rng.uniform(1e-3, 1e2, size=(8, 1))).astype(np.float32)
    return out


ENCODED = _encoded_data()


@pytest.mark.parametrize("data", sorted(ENCODED))
@pytest.mark.parametrize("t", TYPES)
def test_decode_matches_gguf_on_encoded_data(t, data):
    fmt = F.get(t)
    enc = fmt.encode(ENCODED[data])
    y = fmt.decode(enc)
    assert np.array_equal(y.ravel().view(np.uint32), gguf_decode(t, enc.to_bytes()).view(np.uint32))


@pytest.mark.parametrize("t", TYPES)
def test_decode_random_blocks(t):
    """Arbitrary block bytes (every code/scale pattern, fp16 inf/NaN scales included) and the same
    with finite fp16 scales of every magnitude decode like gguf-py's dequantize, bit for bit."""
    rng = np.random.default_rng(3)
    bs, ts = SIZES[t]
    raw = rng.integers(0, 256, (500, ts), dtype=np.uint8)
    assert_decode_matches_gguf(t, raw.tobytes(), (10, 50 * bs))
    for off in fp16_fields(t):
        halves = (rng.standard_normal(500) * 10.0 ** rng.integers(-8, 4, 500)).astype(np.float16)
        raw[:, off : off + 2] = halves.view(np.uint8).reshape(-1, 2)
    assert_decode_matches_gguf(t, raw.tobytes(), (10, 50 * bs))


# -- the shared contract ---------------------------------------------------------------------------
def _roundtrip_inputs() -> dict[str, np.ndarray]:
    return {
        "attn_v": INPUTS["blk.0.attn_v.weight"][:8].reshape(2, 4, 256),
        "ffn_up": INPUTS["blk.0.ffn_up.weight"][:6].reshape(2, 3, 256),
        "normal_3x2x512": np.random.default_rng(2).standard_normal((3, 2, 512)).astype(np.float32),
        "normal_3x4x256": np.random.default_rng(2).standard_normal((3, 4, 256)).astype(np.float32),
    }


ROUNDTRIP = _roundtrip_inputs()


@pytest.mark.parametrize("data", sorted(ROUNDTRIP))
@pytest.mark.parametrize("t", TYPES)
def test_from_bytes_roundtrip(t, data):
    fmt = F.get(t)
    x = ROUNDTRIP[data]
    enc = fmt.encode(x)
    raw = enc.to_bytes()
    assert enc.nbytes == len(raw) == x.size // fmt.block_size * fmt.bytes_per_block
    assert fmt.decode(enc).shape == x.shape
    for src in (raw, bytearray(raw), np.frombuffer(raw, np.uint8)):
        again = fmt.from_bytes(src, x.shape)
        assert again.to_bytes() == raw and again.shape == x.shape
        assert np.array_equal(fmt.decode(again), fmt.decode(enc))
    with pytest.raises(ValueError, match="bytes"):
        fmt.from_bytes(raw[:-1], x.shape)


@pytest.mark.parametrize("t", TYPES)
def test_empty(t):
    fmt = F.get(t)
    bs = fmt.block_size
    for shape in [(0,), (0, bs), (3, 0), (2, 0, 2 * bs), (4, 0, 512)]:
        enc = fmt.encode(np.zeros(shape, np.float32))
        assert enc.nbytes == 0 and enc.to_bytes() == b""
        y = fmt.decode(enc)
        assert y.shape == shape and y.dtype == np.float32
        assert fmt.decode(fmt.from_bytes(b"", shape)).shape == shape


@pytest.mark.parametrize("t", TYPES)
def test_row_length_must_be_whole_blocks(t):
    fmt = F.get(t)
    bs, ts = SIZES[t]
    for row in (bs // 2, bs + 16, bs + bs // 8):  # 256: 128, 272, 288; 32: 16, 48, 36
        with pytest.raises(ValueError, match=f"multiple of the block size {bs}"):
            fmt.encode(np.ones((2, row), np.float32))
        with pytest.raises(ValueError, match="block size"):  # the byte count a naive n // bs gives
            fmt.from_bytes(bytes(2 * row // bs * ts), (2, row))
    with pytest.raises(ValueError, match="block size"):
        fmt.encode(np.float32(1.0))
    for n in (ts - 1, ts + 1):
        with pytest.raises(ValueError, match="bytes"):
            fmt.from_bytes(bytes(n), (1, bs))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("t", TYPES)
def test_non_finite_rejected(t, bad):
    bs = SIZES[t][0]
    for fill, shape, where in [
        (1.0, (3, 2 * bs), (2, bs + 8)),
        (1.0, (2, 512), (1, 300)),
        (0.0, (1, 256), (0, 7)),
        (0.0, (1, 256), (0, 3)),
    ]:
        x = np.full(shape, fill, np.float32)
        x[where] = bad
        with pytest.raises(
            ValueError, match=rf"{t}: input has 1 non-finite value.*\({where[0]}, {where[1]}\)"
        ):
            F.get(t).encode(x)


@pytest.mark.parametrize("t", TYPES)
def test_zero_blocks_decode_to_zero(t):
    bs = SIZES[t][0]
    for x in (np.zeros((2, 2 * bs), np.float32), np.full((2, 2 * bs), -0.0, np.float32)):
        assert np.all(F.roundtrip(x, t) == 0)


@pytest.mark.parametrize("t", TYPES)
def test_unknown_option_rejected(t):
    with pytest.raises(ValueError, match="unknown option"):
        F.get(t).encode(np.zeros((1, SIZES[t][0]), np.float32), block_size=64)


@pytest.mark.parametrize("t", TYPES)
def test_half_precision_inputs(t):
    """torch float16/bfloat16 (converted or generated in that dtype) and numpy float16 encode like
    their exact float32 values."""
    base = torch.randn(4, 256, generator=torch.Generator().manual_seed(0))
    for dt in (torch.float16, torch.bfloat16):
        made = torch.randn(4, 256, dtype=dt, generator=torch.Generator().manual_seed(4))
        for th in (base.to(dt), made):
            assert ours(t, th) == ours(t, th.float().numpy())
    h = base.half().numpy()
    assert ours(t, h) == ours(t, h.astype(np.float32))


@pytest.mark.parametrize("t", TYPES)
def test_non_contiguous_inputs(t):
    """A transposed torch view / numpy view quantizes its logical (row-major) values."""
    rows = (96, 64) if SIZES[t][0] == 32 else (512, 8)
    base = torch.randn(*rows, generator=torch.Generator().manual_seed(5))
    xt = base.T
    assert not xt.is_contiguous()
    expected = ours(t, np.ascontiguousarray(xt.numpy()))
    if t in GGUF_PY_QUANTIZES:
        assert expected == gguf_bytes(t, np.ascontiguousarray(xt.numpy()))
    assert ours(t, xt) == expected
    assert ours(t, base.numpy().T) == expected
