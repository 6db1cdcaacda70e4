"""int1..int8 against torch's fake-quantize kernels with the same scale and zero-point."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qlab
from qlab.formats.integer import qrange

RNG = np.random.default_rng(0)
X = (RNG.standard_t(3, size=(16, 256)) * 0.02).astype(np.float32)


def torch_reference(x: np.ndarray, enc) -> np.ndarray:
    """torch.fake_quantize_per_{tensor,channel}_affine with qlab's scale and zero-point."""
    o = enc.options
    bits = int(enc.format[3:])
    qmin, qmax = qrange(bits, o["symmetric"])
    scale = torch.from_numpy(enc.parts["scale"])
    zp = enc.parts.get("zero_point", np.zeros(scale.numel(), np.uint8)).astype(np.int32)
    xt = torch.from_numpy(x)
    if o["granularity"] == "tensor":
        return torch.fake_quantize_per_tensor_affine(xt, float(scale[0]), int(zp[0]), qmin, qmax).numpy()
    g = x.reshape(-1, x.shape[-1] if o["granularity"] == "channel" else o["group_size"])
    out = torch.fake_quantize_per_channel_affine(
        torch.from_numpy(np.ascontiguousarray(g)), scale, torch.from_numpy(zp), 0, qmin, qmax
    )
    return out.numpy().reshape(x.shape)


# int1 has no symmetric grid (an error, tested below)
@pytest.mark.parametrize("bits, symmetric", [(b, s) for b in range(1, 9) for s in (True, False) if b > 1 or not s])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "group"])
def test_matches_torch_fake_quantize(bits, symmetric, granularity):
    fmt = qlab.formats.get(f"int{bits}")
    enc = fmt.encode(X, symmetric=symmetric, granularity=granularity, group_size=32)
    y = fmt.decode(enc)
    ref = torch_reference(X, enc)
    np.testing.assert_array_equal(y, ref)
    qmin, qmax = qrange(bits, symmetric)
    codes = enc.parts["codes"].astype(np.int32)
    assert codes.min() >= qmin and codes.max() <= qmax
    # both ends of the range are used: the min-max rule maps the extremes onto the grid ends
    assert codes.max() == qmax if symmetric else codes.min() == qmin


def test_nbytes_and_layout():
    fmt = qlab.formats.get("int4")
    assert fmt.bits_per_weight == 4.0
    enc = fmt.encode(X, granularity="group", group_size=32, symmetric=False)
    n_groups = X.size // 32
    assert enc.nbytes == X.size // 2 + 4 * n_groups + n_groups
    lay = fmt.layout(granularity="group", group_size=32, symmetric=False)
    assert lay.nbytes == 4 + 1 + 16 and lay.bits_per_weight == pytest.approx(8 * 21 / 32)
    assert fmt.encode(X).nbytes == X.size // 2 + 4 * X.shape[0]  # per channel (row)
    assert qlab.formats.get("int3").encode(X, granularity="tensor").nbytes == X.size * 3 // 8 + 4


def test_stochastic_rounding_is_unbiased():
    # x sits 30% of the way between two grid points: nearest always rounds down, stochastic
    # rounds up with probability 0.3, so the mean of many draws converges to x.
    fmt = qlab.formats.get("int4")
    grid = np.float32(1.0 / 7)  # scale when absmax = 1
    x = np.full((4000, 64), 2.3 * grid, np.float32)
    x[:, 0] = 1.0  # fixes the row scale at 1/7
    y = fmt.decode(fmt.encode(x, rounding="stochastic", seed=0))[:, 1:]
    n = y.size
    p_up = np.mean(np.isclose(y, 3 * grid))
    # binomial: 0.3 +- 5 sigma
    assert abs(p_up - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)
    assert abs(y.mean() - 2.3 * grid) < 5 * grid * np.sqrt(0.21 / n)
    nearest = fmt.decode(fmt.encode(x))[:, 1:]
    assert np.all(nearest == np.float32(2 * grid))  # biased
    # same seed -> same draw; other seed -> other draw
    a = fmt.encode(x, rounding="stochastic", seed=1).parts["codes"]
    b = fmt.encode(x, rounding="stochastic", seed=1).parts["codes"]
    c = fmt.encode(x, rounding="stochastic", seed=2).parts["codes"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"granularity": "row"}, "granularity"),
        ({"granularity": "group", "group_size": 0}, "group_size"),
        ({"granularity": "group", "group_size": 12}, "group_size"),
        ({"granularity": "group", "group_size": 48}, "does not divide"),
        ({"rounding": "up"}, "rounding"),
        ({"symmetric": "yes"}, "symmetric"),
        ({"bogus": 1}, "unknown option"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        qlab.formats.get("int8").encode(X, **kwargs)


def test_bad_names_and_inputs():
    with pytest.raises(ValueError, match="valid formats"):
        qlab.formats.get("int9")
    with pytest.raises(ValueError, match="symmetric"):
        qlab.formats.get("int1").encode(X, symmetric=True)
    with pytest.raises(ValueError, match="non-finite"):
        qlab.formats.get("int8").encode(np.array([1.0, np.nan], np.float32))
    with pytest.raises(TypeError, match="float64"):
        qlab.formats.get("int8").encode(np.zeros(4))


def test_edge_cases():
    fmt = qlab.formats.get("int8")
    for shape in [(0,), (3, 0), (0, 8), ()]:
        z = np.zeros(shape, np.float32)
        assert fmt.decode(fmt.encode(z)).shape == shape
    assert fmt.decode(fmt.encode(np.zeros((2, 8), np.float32))).tolist() == np.zeros((2, 8)).tolist()
    const = np.full((2, 8), -0.75, np.float32)
    assert np.array_equal(fmt.decode(fmt.encode(const)), const)
    assert np.array_equal(fmt.decode(fmt.encode(const, symmetric=False)), const)
    # one huge outlier: the rest of the row collapses to 0 at int4, which is the lesson
    row = np.full((1, 64), 0.01, np.float32)
    row[0, 5] = 100.0
    y = qlab.roundtrip(row, "int4")
    assert y[0, 5] == 100.0 and np.all(np.delete(y, 5) == 0)
    tiny = np.full((1, 8), 1e-40, np.float32)  # subnormal inputs
    assert np.allclose(qlab.roundtrip(tiny, "int8"), tiny, rtol=1e-2, atol=0)


def test_torch_inputs_half_bf16_noncontiguous():
    t = torch.from_numpy(X).to(torch.bfloat16)
    for xt in (t, t.half(), t.float().T):  # the transposed view is non-contiguous
        ref = qlab.roundtrip(np.ascontiguousarray(xt.float().numpy()), "int8")
        np.testing.assert_array_equal(qlab.roundtrip(xt, "int8"), ref)


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(np.float32, st.tuples(st.integers(1, 4), st.sampled_from([8, 16, 32])), elements=finite),
    bits=st.integers(2, 8),
    symmetric=st.booleans(),
)
def test_error_at_most_half_a_step_and_idempotent(x, bits, symmetric):
    fmt = qlab.formats.get(f"int{bits}")
    enc = fmt.encode(x, symmetric=symmetric)
    y = fmt.decode(enc)
    step = enc.parts["scale"][:, None]
    assert np.all(np.abs(y - x) <= step * (0.5 + 1e-5) + 1e-30)
    y2 = fmt.decode(fmt.encode(y, symmetric=symmetric))
    np.testing.assert_allclose(y2, y, rtol=1e-6, atol=float(step.max()) * 1e-6)


# -- issue 11, item 2: finite input near the float32 maximum -------------------------------------
@pytest.mark.parametrize("fmt", ["int1", "int4", "int8"])
def test_asymmetric_range_overflow_raises(fmt: str) -> None:
    big = np.finfo(np.float32).max
    x = np.array([[-big, big / 3, big, 0, 1, 2, 3, 4]], np.float32)
    with pytest.raises(ValueError, match=rf"{fmt}: channel group 0 spans \[-3.403e\+38, 3.403e\+38\].*overflow float32"):
        qlab.formats.get(fmt).encode(x, symmetric=False)
    y = qlab.formats.roundtrip(x / 4, fmt, symmetric=False)
    assert np.isfinite(y).all()


def test_symmetric_level_rounding_past_float32_max_raises() -> None:
    big = np.finfo(np.float32).max
    x = np.array([[-big, big]], np.float32)
    with pytest.raises(ValueError, match=r"int8: tensor group 0 .*overflow float32 .*symmetric=True"):
        qlab.formats.get("int8").encode(x, granularity="tensor")
