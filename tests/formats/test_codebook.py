"""nf4 / fp4_bnb against bitsandbytes itself (``quantize_4bit`` / ``dequantize_4bit`` on CPU).

Every comparison is bit for bit: packed codes, absmax, the double-quant statistics, and the
decoded values (qlab's float32 product rounded to the input dtype against bnb's output in that
dtype; +0/-0 are treated as equal, see ``FP4_BNB_CODE``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qlab
from qlab.formats import codebook as cb

bnbF = pytest.importorskip("bitsandbytes.functional")

QUANT_TYPE = {"nf4": "nf4", "fp4_bnb": "fp4"}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
NAMES = list(QUANT_TYPE)


@pytest.fixture(scope="module", autouse=True)
def _eager_bnb():
    """bnb's fallback dequantizer (used for blocksize >= 2048 on AVX-512 CPUs) is wrapped in
    torch.compile, which costs ~10 s per dtype here; run eagerly it is the same float32 code."""
    import torch._dynamo

    old = torch._dynamo.config.disable
    torch._dynamo.config.disable = True
    yield
    torch._dynamo.config.disable = old


def _bits(a) -> np.ndarray:
    a = a.float().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float32)
    return (a.reshape(-1) + np.float32(0)).view(np.int32)  # -0.0 + 0.0 == +0.0


def _data(shape, seed=0) -> np.ndarray:
    """Normal values with a different magnitude per row (1e-3 .. 1e3)."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 3, size=(*shape[:-1], 1)) if len(shape) > 1 else 1.0
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def check_against_bnb(x, name: str, block_size: int = 64, double_quant: bool = False, dtype=torch.float32):
    """Encode/decode with qlab and bnb; assert identical bytes, statistics and decoded values."""
    xt = torch.as_tensor(x).to(dtype)
    fmt = qlab.formats.get(name)
    enc = fmt.encode(xt, block_size=block_size, double_quant=double_quant)
    y = fmt.decode(enc)
    packed, state = bnbF.quantize_4bit(
        xt, blocksize=block_size, compress_statistics=double_quant, quant_type=QUANT_TYPE[name]
    )
    y_ref = bnbF.dequantize_4bit(packed, state)

    assert np.array_equal(enc.parts["codes"].reshape(-1), packed.numpy().reshape(-1))
    if double_quant:
        assert np.array_equal(enc.parts["absmax"], state.absmax.numpy())
        assert np.array_equal(_bits(enc.parts["absmax_scale"]), _bits(state.state2.absmax))
        assert _bits(enc.parts["absmax_offset"])[0] == _bits(state.offset)[0]
    else:
        assert np.array_equal(_bits(enc.parts["absmax"]), _bits(state.absmax))
    assert y.dtype == np.float32 and y.shape == tuple(xt.shape)
    assert y_ref.dtype == dtype
    assert np.array_equal(_bits(torch.from_numpy(y).to(dtype)), _bits(y_ref))
    return enc, y


# -- the codebooks are bnb's ---------------------------------------------------------------------
def test_nf4_codebook_is_bnb_and_qlora():
    assert np.array_equal(_bits(cb.NF4_CODE), _bits(bnbF.get_4bit_type("nf4", device="cpu")))
    pytest.importorskip("scipy")
    normal_map = bnbF.create_normal_map().numpy()  # QLoRA's construction from N(0,1) quantiles
    assert np.array_equal(np.unique(normal_map), cb.NF4_CODE)


def test_fp4_codebook_is_bnb():
    assert np.array_equal(
        _bits(cb.FP4_BNB_CODE), bnbF.get_4bit_type("fp4", device="cpu").numpy().view(np.int32)
    )


def test_dynamic_map_is_bnb():
    assert np.array_equal(
        cb.DYNAMIC_8BIT_CODE.view(np.int32), bnbF.create_dynamic_map().numpy().view(np.int32)
    )


@pytest.mark.parametrize("name", NAMES)
def test_midpoints_and_order_are_bnb(name):
    from bitsandbytes.backends.default.ops import _get_4bit_quantize_bounds

    bounds, order = _get_4bit_quantize_bounds(QUANT_TYPE[name], torch.device("cpu"))
    fmt = qlab.formats.get(name)
    assert np.array_equal(fmt.midpoints, bounds.numpy())
    assert np.array_equal(fmt.order, order.numpy())


# -- bit-exactness ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("block_size", [32, 64, 128, 256, 512, 1024, 2048, 4096])
def test_matches_bnb(name, dtype, double_quant, block_size):
    check_against_bnb(_data((8, 4096), seed=block_size), name, block_size, double_quant, DTYPES[dtype])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("shape", [(64,), (4096,), (3, 5, 128), (1, 64), (7, 8192), (2, 1, 2, 256)])
def test_matches_bnb_shapes(name, double_quant, shape):
    check_against_bnb(_data(shape, seed=len(shape)), name, 64, double_quant)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("double_quant", [False, True])
def test_special_blocks(name, double_quant):
    """All-zero blocks, one outlier, tiny/subnormal blocks (absmax < 1e-38: bnb clamps the
    divisor, so they do not reach +-1), float16 extremes; with 257+ blocks for double quant."""
    x = _data((20, 1024), seed=3)
    x[0] = 0.0  # whole row of zero blocks
    x[1, 64:128] = 0.0
    x[2, 7] = 1e4  # single outlier
    x[3, :64] = np.float32(1e-40) * np.sign(x[3, :64])  # subnormal block
    x[3, 64:128] *= np.float32(1e-38)
    x[4, :64] = np.linspace(-65504, 65504, 64, dtype=np.float32)
    check_against_bnb(x, name, 64, double_quant)
    check_against_bnb(np.zeros((4, 256), np.float32), name, 64, double_quant)
    check_against_bnb(np.ones((4, 256), np.float32), name, 64, double_quant)  # centred absmax all 0


@pytest.mark.parametrize("name", NAMES)
def test_ties_on_midpoints(name):
    """Values exactly on a midpoint (block absmax 1, so the scaled value is the value) and one
    float32 step either side: ties go to the lower code, as torch.bucketize does."""
    mids = qlab.formats.get(name).midpoints
    vals = np.concatenate([mids, np.nextafter(mids, np.float32(2)), np.nextafter(mids, np.float32(-2))])
    x = np.zeros((len(vals), 64), np.float32)
    x[:, 0] = 1.0
    x[:, 1] = vals
    x[:, 2] = -vals
    enc, _ = check_against_bnb(x, name, 64)
    if name == "fp4_bnb":  # bnb's zero quirk: (0, mid] -> index 8 (sign bit), [-mid, 0] -> index 0
        e = qlab.formats.get(name).encode(np.array([1.0, 1e-4, -1e-4, 0.0] * 16, np.float32))
        assert list(e.parts["codes"][:2]) == [0x38, 0x00]


# -- the 8-bit dynamic quantizer used by double quant ----------------------------------------------
def test_8bit_blockwise_matches_bnb():
    """bnb's CPU quantize_blockwise uses a 65536-bin LUT: check values on and beside every bin
    edge, every code and midpoint, in groups whose absmax is 1, plus random groups."""
    k = np.arange(1, 65536, dtype=np.float64)
    edge = (2 * (k - 0.5) / 65535 - 1).astype(np.float32)
    c = cb.DYNAMIC_8BIT_CODE
    mids = (c[:-1] + c[1:]) * np.float32(0.5)
    v = np.concatenate([edge, mids, c])
    v = np.clip(np.concatenate([v, np.nextafter(v, np.float32(2)), np.nextafter(v, np.float32(-2))]), -1, 1)
    groups = -(-v.size // 255)
    x = np.zeros((groups, 256), np.float32)
    x[:, 0] = 1.0
    x[:, 1:].reshape(-1)[: v.size] = v
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [x.reshape(-1), rng.standard_normal(3000).astype(np.float32) * 7, np.zeros(300, np.float32)]
    )
    q_ref, state = bnbF.quantize_blockwise(torch.from_numpy(x), blocksize=256)
    q, absmax = cb.quantize_8bit_blockwise(x)
    assert np.array_equal(q, q_ref.numpy())
    assert np.array_equal(_bits(absmax), _bits(state.absmax))
    y_ref = bnbF.dequantize_blockwise(q_ref, state)
    assert np.array_equal(_bits(cb.dequantize_8bit_blockwise(q, absmax)), _bits(y_ref))


# -- empty, errors, storage ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(0,), (0, 64), (3, 0)])
def test_empty(name, shape):
    fmt = qlab.formats.get(name)
    enc = fmt.encode(np.zeros(shape, np.float32))
    assert enc.nbytes == 0 and fmt.decode(enc).shape == shape
    enc = fmt.encode(np.zeros(shape, np.float32), double_quant=True)
    assert enc.nbytes == 4  # the offset (bnb stores nan for it; qlab 0)
    assert float(enc.parts["absmax_offset"]) == 0.0 and fmt.decode(enc).shape == shape
    packed, state = bnbF.quantize_4bit(torch.zeros(shape), quant_type=QUANT_TYPE[name])
    assert packed.numel() == enc.parts["codes"].size == 0 and state.absmax.numel() == 0


@pytest.mark.parametrize("name", NAMES)
def test_errors(name):
    fmt = qlab.formats.get(name)
    x = np.ones((2, 128), np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[1, 5] = bad
        with pytest.raises(ValueError, match="non-finite"):
            fmt.encode(y)
    with pytest.raises(ValueError, match="multiple"):
        fmt.encode(np.ones((4, 96), np.float32))  # bnb would flatten; qlab blocks follow rows
    with pytest.raises(ValueError, match="multiple"):
        fmt.encode(np.float32(1.0))
    for bad in (0, 16, 48, 100, 8192, 64.0, True, "64", None):
        with pytest.raises(ValueError, match="block_size"):
            fmt.encode(x, block_size=bad)
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="double_quant"):
            fmt.encode(x, double_quant=bad)
    with pytest.raises(ValueError, match="unknown option"):
        fmt.encode(x, blocksize=64)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("block_size", [32, 64, 4096])
def test_nbytes_and_layout(name, block_size):
    fmt = qlab.formats.get(name)
    for shape in [(4096,), (33, 8192), (4, 64 * 256)]:
        x = _data(shape)
        if x.size % block_size:
            continue
        n, nb = x.size, x.size // block_size
        enc = fmt.encode(x, block_size=block_size)
        assert enc.nbytes == n // 2 + 4 * nb == sum(p.nbytes for p in enc.parts.values())
        enc = fmt.encode(x, block_size=block_size, double_quant=True)
        assert (
            enc.nbytes == n // 2 + nb + 4 * (-(-nb // 256)) + 4 == sum(p.nbytes for p in enc.parts.values())
        )
        lay = fmt.layout(block_size=block_size, double_quant=True)
        if n % lay.block_size == 0:
            assert enc.nbytes == n // lay.block_size * lay.nbytes + sum(b for _, b in lay.per_tensor)
    lay = fmt.layout(block_size=block_size)
    assert lay.nbytes == 4 + block_size // 2 and lay.bits_per_weight == 8 * (4 + block_size // 2) / block_size


def test_default_layouts():
    fmt = qlab.formats.get("nf4")
    assert (
        fmt.bits_per_weight == 4.5
        and fmt.layout().formula == "4 (absmax fp32) + 32 (codes 64x4bit) = 36 bytes / 64 values"
    )
    lay = fmt.layout(double_quant=True)
    assert (lay.block_size, lay.nbytes, lay.per_tensor) == (
        16384,
        8192 + 256 + 4,
        (("absmax offset fp32", 4),),
    )
    assert qlab.formats.describe("fp4_bnb")["family"] == "codebook"


def test_numpy_torch_and_roundtrip_agree():
    x = _data((4, 512))
    x_copy = x.copy()
    a = qlab.formats.roundtrip(x, "nf4", block_size=128, double_quant=True)
    b = qlab.formats.roundtrip(torch.from_numpy(x), "nf4", block_size=128, double_quant=True)
    assert np.array_equal(a, b) and np.array_equal(x, x_copy)


# -- properties ------------------------------------------------------------------------------------
def _half_gap(code: np.ndarray) -> float:
    return float(np.max(np.diff(np.sort(code.astype(np.float64))))) / 2


_finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(NAMES), bs=st.sampled_from([32, 64]), nblocks=st.integers(1, 6), data=st.data())
def test_error_bound(name, bs, nblocks, data):
    """|x - decoded| <= (largest code gap / 2) * block absmax (+ float32 rounding, + 1e-38 for
    blocks below bnb's divisor clamp); with double quant, + the error of the stored absmax."""
    x = data.draw(arrays(np.float32, (nblocks, bs), elements=_finite))
    fmt = qlab.formats.get(name)
    am = np.abs(x).max(axis=1, keepdims=True).astype(np.float64)
    slack = am * 2.0**-21 + 1e-38
    enc = fmt.encode(x, block_size=bs)
    err = np.abs(fmt.decode(enc).astype(np.float64) - x)
    assert np.all(err <= _half_gap(fmt.code) * am + slack)
    enc = fmt.encode(x, block_size=bs, double_quant=True)
    am_dq = (
        cb.dequantize_8bit_blockwise(enc.parts["absmax"], enc.parts["absmax_scale"])
        + enc.parts["absmax_offset"]
    )
    err = np.abs(fmt.decode(enc).astype(np.float64) - x)
    assert np.all(err <= _half_gap(fmt.code) * am + np.abs(am_dq[:, None] - am) + 2 * slack)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(NAMES), nblocks=st.integers(1, 4), data=st.data())
def test_decode_encode_idempotent(name, nblocks, data):
    """Re-encoding decoded values reproduces them (blocks with absmax >= 1e-30; below bnb's
    1e-38 divisor clamp the largest value does not map to +-1 and the absmax shrinks)."""
    x = data.draw(arrays(np.float32, (nblocks, 64), elements=_finite))
    am = np.abs(x).max(axis=1)
    assume(np.all((am == 0) | (am >= 1e-30)))
    fmt = qlab.formats.get(name)
    y = fmt.decode(fmt.encode(x))
    assert np.array_equal(fmt.decode(fmt.encode(y)), y)
