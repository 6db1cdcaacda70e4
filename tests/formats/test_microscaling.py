"""Microscaling formats: mxfp4 against llama.cpp's bytes and gguf-py; the other MX formats and
NVFP4 against references recomputed here from the spec with ml_dtypes / torch casts."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlab.formats import get
from qlab.formats._floatbits import unpack

DATA = Path(__file__).resolve().parents[1] / "data" / "ggml"
INPUTS = dict(np.load(DATA / "inputs.npz"))
MXFP4_BYTES = dict(np.load(DATA / "mxfp4.npz"))

# name: (ml_dtypes element dtype or None for int8, emax_elem, element bits, torch dtype)
MX = {
    "mxfp8_e4m3": (ml_dtypes.float8_e4m3fn, 8, 8, torch.float8_e4m3fn),
    "mxfp8_e5m2": (ml_dtypes.float8_e5m2, 15, 8, torch.float8_e5m2),
    "mxfp6_e2m3": (ml_dtypes.float6_e2m3fn, 2, 6, None),
    "mxfp6_e3m2": (ml_dtypes.float6_e3m2fn, 4, 6, None),
    "mxint8": (None, 0, 8, None),
}
ALL = [*MX, "mxfp4", "nvfp4"]


def hard_matrix(seed: int = 0) -> np.ndarray:
    """Blocks of 32 at wildly different magnitudes: zero blocks, float32 subnormals, 1e38,
    values on exact rounding ties of every element grid, amax just below a power of two."""
    rng = np.random.default_rng(seed)
    n = 256
    exps = rng.integers(-149, 127, n)
    x = rng.standard_normal((n, 32)) * np.ldexp(1.0, exps)[:, None]
    ties = rng.integers(-64, 64, (n, 32)) / 16.0  # multiples of 1/16: many exact midpoints
    x[::3] = ties[::3] * np.ldexp(1.0, rng.integers(-20, 20, n))[::3, None]
    x[1::7, 0] = np.ldexp(1.0 - 2.0**-24, rng.integers(-100, 100, len(x[1::7])))  # just below 2^k
    x[5] = 0.0
    x = np.clip(x, -3e38, 3e38).astype(np.float32)
    return x.reshape(-1, 256)


MATRICES = {**INPUTS, "hard": hard_matrix()}


# -- MXFP4: GGML bytes --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_mxfp4_bytes_equal_llama_cpp(name):
    fmt = get("mxfp4")
    x = INPUTS[name]
    enc = fmt.encode(x)
    assert enc.to_bytes() == MXFP4_BYTES[name].tobytes()
    assert enc.nbytes == x.size // 32 * 17
    # decoding llama.cpp's bytes equals gguf-py's dequantize bit for bit
    raw = MXFP4_BYTES[name]
    ours = fmt.decode(fmt.from_bytes(raw, x.shape))
    ref = quants.dequantize(raw.reshape(x.shape[0], -1), GGMLQuantizationType.MXFP4)
    assert np.array_equal(ours.view(np.uint32), ref.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mxfp4_bytes_equal_gguf_py(seed):
    """gguf-py's quantizer reproduces llama.cpp's; compare on adversarial blocks (ties of the
    E2M1 grid, amax just below powers of two, tiny blocks whose exponent wraps, huge values)."""
    fmt = get("mxfp4")
    x = hard_matrix(seed)
    with np.errstate(over="ignore", divide="ignore"):
        ref = quants.quantize(x, GGMLQuantizationType.MXFP4)
    assert fmt.encode(x).to_bytes() == ref.tobytes()
    dq = quants.dequantize(ref, GGMLQuantizationType.MXFP4)
    with np.errstate(over="ignore"):
        ours = fmt.decode(fmt.from_bytes(ref.tobytes(), x.shape))
    assert np.array_equal(ours.view(np.uint32), dq.astype(np.float32).view(np.uint32))


def test_mxfp4_ties_go_to_smaller_magnitude():
    """GGML's documented difference from round-to-even: x/X = 1.75 -> 1.5 (E2M1 RNE gives 2)."""
    x = np.zeros((1, 32), np.float32)
    x[0, :4] = [4.0, 1.75, 0.75, -3.5]  # amax 4 -> X = 1
    y = get("mxfp4").decode(get("mxfp4").encode(x))[0, :4]
    assert y.tolist() == [4.0, 1.5, 0.5, -3.0]


# -- MX formats: reference recomputed from the spec ------------------------------------------------
def mx_reference(name: str, x: np.ndarray):
    """OCP MX v1.0 section 6.3 in float64: X = 2**(floor(log2 amax) - emax), clamped to
    [2**-127, 2**127] (all-zero block: log2 of FP32_MIN_NORMAL); elements = saturating cast of
    V/X via ml_dtypes (int8: round half even, clamp +-127)."""
    dtype, emax, _, _ = MX[name]
    blocks = x.reshape(-1, 32).astype(np.float64)
    amax = np.abs(blocks).max(axis=1)
    with np.errstate(divide="ignore"):
        fl = np.where(amax > 0, np.floor(np.log2(amax)), -126)
    shared = np.clip(fl - emax, -127, 127)
    scaled = (blocks / 2.0**shared[:, None]).astype(np.float32)
    if dtype is None:
        q = np.clip(np.rint(scaled.astype(np.float64) * 64), -127, 127).astype(np.int8)
        vals = q / 64  # from the integer: int8 has no -0
        codes = q.view(np.uint8)
    else:
        m = float(ml_dtypes.finfo(dtype).max)
        elem = np.clip(scaled, -m, m).astype(dtype)
        codes, vals = elem.view(np.uint8), elem.astype(np.float64)
    decoded = (vals * 2.0**shared[:, None]).astype(np.float32).reshape(x.shape)
    return (shared + 127).astype(np.uint8), codes.reshape(-1), decoded, scaled


@pytest.mark.parametrize("name", list(MX))
@pytest.mark.parametrize("matrix", sorted(MATRICES))
def test_mx_matches_spec_reference(name, matrix):
    fmt = get(name)
    x = MATRICES[matrix]
    enc = fmt.encode(x)
    scales, codes, decoded, scaled = mx_reference(name, x)
    _, _, bits, tdtype = MX[name]
    assert np.array_equal(enc.parts["scales"], scales)
    assert np.array_equal(unpack(enc.parts["codes"], bits, x.size), codes)
    assert np.array_equal(fmt.decode(enc).view(np.uint32), decoded.view(np.uint32))
    assert enc.nbytes == x.size // 32 * (1 + 32 * bits // 8)
    if tdtype is not None:  # torch's float8 cast of the saturated V/X gives the same codes
        m = float(ml_dtypes.finfo(MX[name][0]).max)
        t = torch.from_numpy(scaled).clamp(-m, m).to(tdtype).view(torch.uint8).numpy()
        assert np.array_equal(t.reshape(-1), codes)


# -- NVFP4: torchao's recipe recomputed with torch ops ---------------------------------------------
def nvfp4_reference(x: np.ndarray):
    """torchao ``_nvfp4_quantize`` with ``per_tensor_scale = amax / (448 * 6)`` (float32 torch ops;
    torch's float8_e4m3fn cast for the block scale, ml_dtypes' float4_e2m1fn for elements)."""
    xt = torch.from_numpy(x)
    per_tensor = xt.abs().max().to(torch.float32) / (448.0 * 6.0)
    blocks = xt.reshape(-1, 16)
    block_scale = blocks.abs().amax(dim=-1) / 6.0
    s = torch.clamp(block_scale / per_tensor, min=torch.finfo(torch.float8_e4m3fn).tiny, max=448.0)
    s8 = s.to(torch.float8_e4m3fn)
    total = per_tensor * s8.to(torch.float32)
    data = torch.clamp(blocks / total.unsqueeze(-1), -6.0, 6.0).numpy()
    e2m1 = data.astype(ml_dtypes.float4_e2m1fn)
    decoded = (e2m1.astype(np.float32) * total.numpy()[:, None]).reshape(x.shape)
    return per_tensor.item(), s8.view(torch.uint8).numpy(), e2m1.view(np.uint8).reshape(-1), decoded


@pytest.mark.parametrize("matrix", sorted(MATRICES))
def test_nvfp4_matches_torchao_recipe(matrix):
    x = MATRICES[matrix]
    if matrix == "hard":
        x = x / np.float32(1e6)  # keep amax / 2688 well inside float32 (the recipe divides by it)
    fmt = get("nvfp4")
    enc = fmt.encode(x)
    ts, scales, codes, decoded = nvfp4_reference(x)
    assert enc.parts["tensor_scale"][0] == np.float32(ts)
    assert np.array_equal(enc.parts["scales"], scales)
    assert np.array_equal(unpack(enc.parts["codes"], 4, x.size), codes)
    assert np.array_equal(fmt.decode(enc).view(np.uint32), decoded.view(np.uint32))
    assert enc.nbytes == x.size // 16 * 9 + 4
    assert enc.parts["codes"][0] == codes[0] | (codes[1] << 4)  # first value in the low nibble


def test_nvfp4_all_zero_tensor():
    fmt = get("nvfp4")
    y = fmt.decode(fmt.encode(np.zeros((2, 32), np.float32)))
    assert np.array_equal(y, np.zeros((2, 32), np.float32))


# -- contract: layout, bad input, empty arrays ----------------------------------------------------
def test_layouts():
    bpw = {"mxfp8_e4m3": 8.25, "mxfp8_e5m2": 8.25, "mxfp6_e2m3": 6.25, "mxfp6_e3m2": 6.25,
           "mxfp4": 4.25, "mxint8": 8.25, "nvfp4": 4.5}
    for name, b in bpw.items():
        fmt = get(name)
        assert fmt.family == "microscaling" and fmt.bits_per_weight == b
    assert get("nvfp4").layout().per_tensor == (("tensor_scale fp32", 4),)


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs(name):
    fmt = get(name)
    with pytest.raises(ValueError, match="multiple"):
        fmt.encode(np.ones((2, 24), np.float32))
    for bad in (np.nan, np.inf):
        x = np.ones((2, 32), np.float32)
        x[1, 3] = bad
        with pytest.raises(ValueError, match="non-finite"):
            fmt.encode(x)
    with pytest.raises(ValueError, match="unknown option"):
        fmt.encode(np.ones((1, 32), np.float32), block_size=16)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(0,), (0, 64), (5, 0)])
def test_empty(name, shape):
    fmt = get(name)
    y = fmt.decode(fmt.encode(np.zeros(shape, np.float32)))
    assert y.shape == shape and y.dtype == np.float32


def test_torch_input():
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    for name in ALL:
        fmt = get(name)
        assert np.array_equal(fmt.decode(fmt.encode(x)), fmt.decode(fmt.encode(x.float().numpy())))


# -- properties -------------------------------------------------------------------------------------
blocks32 = hnp.arrays(np.float32, (2, 32), elements=st.floats(-1e6, 1e6, width=32))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([*MX, "mxfp4"]), blocks32)
def test_mx_idempotent_and_bounded(name, x):
    """decode(encode(.)) is idempotent on its own output, and each element's error is at most
    X times the element grid's worst case: half an ulp of the top binade, or the clamp from
    2**(emax+1) down to the element max."""
    fmt = get(name)
    y = fmt.decode(fmt.encode(x))
    assert np.array_equal(fmt.decode(fmt.encode(y)), y)
    enc = fmt.encode(x)
    if name == "mxfp4":
        raw = enc.parts["blocks"]
        shared = raw[:, 0].astype(np.float64) - 127  # GGML's exponent, same meaning as OCP's X
        emax, top, half_ulp = 2, 6.0, 1.0
    else:
        dtype, emax, _, _ = MX[name]
        shared = enc.parts["scales"].astype(np.float64) - 127
        fi = ml_dtypes.finfo(dtype) if dtype is not None else None
        top = float(fi.max) if fi else 127 / 64
        half_ulp = 2.0 ** (emax - fi.nmant - 1) if fi else 2.0**-7
    bound = max(2.0 ** (emax + 1) - top, half_ulp) * 2.0**shared
    err = np.abs(y.astype(np.float64) - x.astype(np.float64))
    assert np.all(err <= bound[:, None])


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, (2, 32), elements=st.floats(-1e4, 1e4, width=32)))
def test_nvfp4_error_within_block_scale(x):
    """NVFP4 element error <= one E2M1 step (2 * total scale) plus any clamp at 6 * total."""
    fmt = get("nvfp4")
    enc = fmt.encode(x)
    y = fmt.decode(enc)
    ts = float(enc.parts["tensor_scale"][0])
    total = ts * get("fp8_e4m3").decode_bits(enc.parts["scales"]).astype(np.float64)
    blocks = x.reshape(-1, 16).astype(np.float64)
    clamp = np.maximum(np.abs(blocks).max(axis=1) - 6 * total, 0)
    err = np.abs(y.reshape(-1, 16) - blocks)
    assert np.all(err <= (total + clamp)[:, None] * (1 + 1e-6))
