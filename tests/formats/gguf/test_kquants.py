"""Q2_K / Q4_K / Q5_K against llama.cpp's own bytes (tests/data/ggml, written by
``llama_model_quantize`` without an importance matrix, i.e. ``quantize_row_q*_K_ref``), against
gguf-py's reference dequantizer, and -- when llama-cpp-python is installed -- against
``ggml_quantize_chunk`` from its bundled libggml on random and adversarial data."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qlab.formats as F
from qlab.formats.gguf.kquants import nearest_int

DATA = Path(__file__).resolve().parents[2] / "data" / "ggml"
INPUTS = dict(np.load(DATA / "inputs.npz"))
NAMES = ["q2_k", "q4_k", "q5_k"]
NMAX = {"q2_k": 3, "q4_k": 15, "q5_k": 31}
EPS = float(np.finfo(np.float32).eps)


def oracle(name: str) -> dict[str, np.ndarray]:
    return dict(np.load(DATA / f"{name}.npz"))


def gguf_decode(name: str, raw: np.ndarray) -> np.ndarray:
    return dequantize(np.asarray(raw, np.uint8).ravel(), GGMLQuantizationType[name.upper()]).ravel()


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


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("matrix", sorted(INPUTS))
def test_encode_matches_llama_cpp_bytes(name: str, matrix: str) -> None:
    got = F.get(name).encode(INPUTS[matrix]).to_bytes()
    assert np.array_equal(np.frombuffer(got, np.uint8), oracle(name)[matrix])


@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_gguf_on_oracle_bytes(name: str) -> None:
    fmt = F.get(name)
    for matrix, raw in oracle(name).items():
        y = fmt.decode(fmt.from_bytes(raw, INPUTS[matrix].shape))
        assert y.shape == INPUTS[matrix].shape and y.dtype == np.float32
        assert np.array_equal(y.ravel(), gguf_decode(name, raw))


@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_gguf_on_random_data_and_bytes(name: str) -> None:
    fmt = F.get(name)
    rng = np.random.default_rng(1)
    x = (rng.standard_t(3, size=(8, 512)) * rng.uniform(1e-3, 1e2, size=(8, 1))).astype(np.float32)
    enc = fmt.encode(x)
    assert np.array_equal(fmt.decode(enc).ravel(), gguf_decode(name, enc.parts["blocks"]))
    # arbitrary bytes: every scale/min/code pattern, fp16 inf/NaN included
    raw = rng.integers(0, 256, size=(64, fmt.type_size), dtype=np.uint8)
    with np.errstate(all="ignore"):
        y = fmt.decode(fmt.from_bytes(raw, (64, 256)))
        assert np.array_equal(y.ravel(), gguf_decode(name, raw), equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
def test_bytes_round_trip_and_layout(name: str) -> None:
    fmt = F.get(name)
    x = np.random.default_rng(2).standard_normal((3, 2, 512)).astype(np.float32)
    enc = fmt.encode(x)
    assert enc.nbytes == len(enc.to_bytes()) == 3 * 2 * 2 * fmt.type_size
    assert fmt.bits_per_weight == {"q2_k": 2.625, "q4_k": 4.5, "q5_k": 5.5}[name]
    back = fmt.from_bytes(enc.to_bytes(), x.shape)
    assert back.to_bytes() == enc.to_bytes()
    assert np.array_equal(fmt.decode(back), fmt.decode(enc))
    assert fmt.decode(enc).shape == x.shape
    with pytest.raises(ValueError):
        fmt.from_bytes(enc.to_bytes()[:-1], x.shape)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input(name: str) -> None:
    fmt = F.get(name)
    with pytest.raises(ValueError, match="multiple of the block size 256"):
        fmt.encode(np.zeros((2, 128), np.float32))
    for bad in (np.nan, np.inf):
        x = np.zeros((1, 256), np.float32)
        x[0, 7] = bad
        with pytest.raises(ValueError, match="non-finite"):
            fmt.encode(x)
    with pytest.raises(ValueError):
        fmt.encode(np.zeros(256, np.float32), block_size=32)  # no options


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(0,), (0, 256), (4, 0, 512)])
def test_empty(name: str, shape: tuple[int, ...]) -> None:
    fmt = F.get(name)
    enc = fmt.encode(np.zeros(shape, np.float32))
    assert enc.nbytes == 0 and enc.to_bytes() == b""
    y = fmt.decode(enc)
    assert y.shape == shape and y.dtype == np.float32


@pytest.mark.parametrize("name", NAMES)
def test_torch_half_inputs(name: str) -> None:
    torch = pytest.importorskip("torch")
    fmt = F.get(name)
    t = torch.randn(4, 256, generator=torch.Generator().manual_seed(0))
    for dt in (torch.float16, torch.bfloat16):
        th = t.to(dt)
        assert fmt.encode(th).to_bytes() == fmt.encode(th.float().numpy()).to_bytes()


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


# -- optional: llama.cpp itself, on data the committed oracle does not cover ------------------------
def _ggml_quantize_chunk():
    llama_cpp = pytest.importorskip("llama_cpp")
    libdir = Path(llama_cpp.__file__).parent / "lib"
    for so in sorted(libdir.glob("libggml*.so*")) + sorted(libdir.glob("libllama*.so*")):
        try:
            fn = ctypes.CDLL(str(so)).ggml_quantize_chunk
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_size_t
        fn.argtypes = (
            [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 3 + [ctypes.c_void_p]
        )
        return fn
    pytest.skip("no libggml with ggml_quantize_chunk in the llama_cpp package")


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


@pytest.mark.parametrize("name", NAMES)
def test_encode_matches_llama_cpp_library(name: str) -> None:
    quantize = _ggml_quantize_chunk()
    fmt = F.get(name)
    x = _adversarial(np.random.default_rng(3), 40)
    want = np.zeros(x.shape[0] * fmt.type_size, np.uint8)
    quantize(fmt.ggml_type, x.ctypes.data, want.ctypes.data, 0, x.shape[0], 256, None)
    assert np.array_equal(np.frombuffer(fmt.encode(x).to_bytes(), np.uint8), want)
