"""Contract tests that every registered format must pass (names, layout, shapes, bytes, bad input)."""

import numpy as np
import pytest
import torch
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

import qlab
from qlab.formats import names

ALL = names()
X = np.random.default_rng(0).standard_normal((2, 3, 256)).astype(np.float32)

ISSUE_FORMATS = (
    [f"int{b}" for b in range(1, 9)]
    + "fp16 bf16 fp8_e4m3 fp8_e5m2 fp8_e3m4 fp6_e2m3 fp6_e3m2 fp4_e2m1 e8m0 nf4 fp4_bnb".split()
    + "mxfp8_e4m3 mxfp8_e5m2 mxfp6_e2m3 mxfp6_e3m2 mxfp4 mxint8 nvfp4".split()
    + "q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs tq1_0 tq2_0".split()
    + "iq3_s iq3_xxs iq2_s iq2_xs iq2_xxs iq1_m iq1_s".split()  # issue 12: the IQ lattice types
)


def opts(fmt, x) -> dict:
    """Options every encode needs: an importance vector for the types llama.cpp cannot quantize
    without one (iq2_xxs, iq2_xs, iq1_s), nothing for the others."""
    if getattr(fmt, "requires_imatrix", False):
        return {"imatrix": np.linspace(0.5, 2.0, np.shape(x)[-1], dtype=np.float32)}
    return {}


def encode(fmt, x):
    return fmt.encode(x, **opts(fmt, x))


def test_every_promised_format_is_registered():
    assert sorted(ALL) == sorted(ISSUE_FORMATS)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        qlab.formats.get("q4_z")
    assert "q4_k" in str(e.value) and "nf4" in str(e.value)
    assert qlab.formats.get("Q4_K") is qlab.formats.get("q4_k")


@pytest.mark.parametrize("name", [n for n in ALL if qlab.formats.get(n).family == "gguf"] + ["mxfp4"])
def test_ggml_layouts_agree_with_gguf_py(name):
    fmt = qlab.formats.get(name)
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[name.upper()]]
    lay = fmt.layout()
    assert (lay.block_size, lay.nbytes) == (block, size)
    assert fmt.bits_per_weight == pytest.approx(8 * size / block)
    enc = encode(fmt, X)
    assert enc.nbytes == len(enc.to_bytes()) == X.size // block * size


def test_nominal_bits():
    bpw = {n: qlab.formats.get(n).bits_per_weight for n in ALL}
    assert bpw["q4_0"] == 4.5 and bpw["q8_0"] == 8.5 and bpw["q4_k"] == 4.5 and bpw["q6_k"] == 6.5625
    assert bpw["nf4"] == 4.5 and bpw["mxfp4"] == 4.25 and bpw["nvfp4"] == 4.5 and bpw["int4"] == 4
    assert bpw["fp8_e4m3"] == 8 and bpw["fp6_e2m3"] == 6 and bpw["tq1_0"] == 1.6875


@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_and_layout_contract(name):
    fmt = qlab.formats.get(name)
    d = qlab.formats.describe(name)
    assert d["family"] and d["description"] and "=" in d["layout"]
    lay = fmt.layout()
    assert lay.nbytes == sum(n for _, n in lay.parts)
    x = np.abs(X) if name == "e8m0" else X
    enc = encode(fmt, x)
    y = fmt.decode(enc)
    assert y.shape == X.shape and y.dtype == np.float32
    assert enc.nbytes >= X.size * lay.bits_per_weight / 8 - 1e-9
    np.testing.assert_array_equal(qlab.roundtrip(x, name, **opts(fmt, x)), y)
    # torch input (and a non-contiguous view) gives the same result as the numpy array
    t = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1))).transpose(0, 1)
    assert not t.is_contiguous()
    np.testing.assert_array_equal(qlab.roundtrip(t, name, **opts(fmt, x)), y)


@pytest.mark.parametrize("name", ALL)
def test_empty_arrays(name):
    fmt = qlab.formats.get(name)
    row = fmt.block_size if fmt.family in ("gguf", "microscaling", "codebook") else 8
    for shape in [(0, row), (3, 0), (0,)]:
        if shape[-1] == 0 and fmt.family in ("gguf", "microscaling", "codebook"):
            shape = (0, row)
        y = fmt.decode(encode(fmt, np.zeros(shape, np.float32)))
        assert y.shape == shape


@pytest.mark.parametrize("name", [n for n in ALL if qlab.formats.get(n).family in ("gguf", "microscaling", "codebook")])
def test_partial_blocks_raise(name):
    fmt = qlab.formats.get(name)
    with pytest.raises(ValueError, match="multiple"):
        encode(fmt, np.ones((2, fmt.block_size + 1), np.float32))


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("fp16", "bf16", "e8m0")])
def test_nan_is_rejected_by_scaled_formats(name):
    x = X.copy()
    x[1, 2, 7] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        encode(qlab.formats.get(name), x)


def test_wrong_input_types():
    fmt = qlab.formats.get("q4_0")
    with pytest.raises(TypeError):
        fmt.encode(X.astype(np.float64))
    with pytest.raises(TypeError):
        fmt.encode(X.tolist())
    with pytest.raises(TypeError):
        fmt.encode(torch.ones(32, dtype=torch.int32))
    with pytest.raises(ValueError, match="cannot decode"):
        fmt.decode(qlab.formats.get("q8_0").encode(X))


def test_accepts_row():
    get = qlab.formats.get
    assert get("int4").accepts_row(7) and not get("int4").accepts_row(7, granularity="group", group_size=8)
    assert get("q4_k").accepts_row(512) and not get("q4_k").accepts_row(576)
    assert get("nf4").accepts_row(64) and not get("nf4").accepts_row(64, block_size=128)
    assert get("fp8_e4m3").accepts_row(3) and get("nvfp4").accepts_row(32) and not get("mxfp4").accepts_row(48)
