"""Observers against independent computations: PyTorch's observers, numpy, brute-force searches."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import entropy
from torch.ao.quantization import HistogramObserver as TorchHistogramObserver
from torch.ao.quantization import (
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)

import qlab.quantize.observers
from qlab import formats
from qlab.quantize.configs import activation_spec
from qlab.quantize.fakequant import RangeQuantizer
from qlab.quantize.observers.histogram import kl_argmin, kl_divergences


def _batches(seed: int = 0, n: int = 4, shape: tuple[int, ...] = (16, 8, 5)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * (1 + i) + 0.3 * i for i in range(n)]


def _feed(obs, batches):
    for b in batches:
        obs(b)
    return obs


# -- min-max, against torch.ao.quantization ------------------------------------------------------
def test_minmax_qparams_equal_torch_affine_and_symmetric():
    bs = _batches()
    ours = _feed(qlab.quantize.observers.get("minmax"), bs)
    t_aff = _feed(MinMaxObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine), bs)
    s, z = ours.qparams("int8", symmetric=False)  # uint8 grid 0..255, zero-point: torch's quint8
    ts, tz = t_aff.calculate_qparams()
    assert s.dtype == np.float32 and s == ts.item() and z == tz.item()
    # qlab's symmetric int8 is the restricted range -127..127 (torch: quant_min=-127, quant_max=127)
    t_sym = _feed(MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=-127, quant_max=127), bs)
    s, z = ours.qparams("int8")
    ts, tz = t_sym.calculate_qparams()
    assert s == ts.item() and z == tz.item() == 0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_per_channel_minmax_equals_torch(axis):
    bs = _batches(1)
    ours = _feed(qlab.quantize.observers.get("minmax", granularity="channel", axis=axis), bs)
    theirs = _feed(PerChannelMinMaxObserver(ch_axis=axis, dtype=torch.quint8, qscheme=torch.per_channel_affine), bs)
    lo, hi = ours.range()
    assert np.array_equal(lo, theirs.min_val.numpy()) and np.array_equal(hi, theirs.max_val.numpy())
    s, z = ours.qparams("int8", symmetric=False)
    ts, tz = theirs.calculate_qparams()
    assert np.array_equal(s, ts.numpy().astype(np.float32)) and np.array_equal(z, tz.numpy())


def test_qparams_are_the_formats_own_scales():
    """A min-max range over one tensor gives exactly the scale qlab.formats.int8 stores for it."""
    x = _batches(2, 1)[0]
    obs = _feed(qlab.quantize.observers.get("minmax"), [x])
    for sym in (True, False):
        enc = formats.get("int8").encode(x, granularity="tensor", symmetric=sym)
        s, z = obs.qparams("int8", symmetric=sym)
        assert s == enc.parts["scale"][0]
        assert z == (enc.parts["zero_point"][0] if not sym else 0)


# -- moving average ------------------------------------------------------------------------------
def test_moving_average_equals_torch_and_a_hand_loop():
    bs = _batches(3, 6)
    ours = _feed(qlab.quantize.observers.get("moving_average", averaging_constant=0.1), bs)
    theirs = _feed(MovingAverageMinMaxObserver(averaging_constant=0.1), bs)
    lo, hi = ours.range()
    assert lo == theirs.min_val.item() and hi == theirs.max_val.item()
    c = np.float32(0.1)
    m_lo, m_hi = np.float32(bs[0].min()), np.float32(bs[0].max())
    for b in bs[1:]:  # m <- m + c (batch - m), float32
        m_lo = np.float32(m_lo + c * np.float32(np.float32(b.min()) - m_lo))
        m_hi = np.float32(m_hi + c * np.float32(np.float32(b.max()) - m_hi))
    assert lo == m_lo and hi == m_hi


def test_moving_average_per_channel_equals_torch():
    bs = _batches(4, 5)
    ours = _feed(qlab.quantize.observers.get("ema", granularity="channel", axis=1, averaging_constant=0.2), bs)
    theirs = _feed(MovingAveragePerChannelMinMaxObserver(averaging_constant=0.2, ch_axis=1), bs)
    lo, hi = ours.range()
    assert np.array_equal(lo, theirs.min_val.numpy()) and np.array_equal(hi, theirs.max_val.numpy())


# -- per channel vs per tensor -----------------------------------------------------------------------
def test_per_channel_isolates_a_channel_outlier():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(256, 8, generator=g)
    x[:, 3] *= 100  # one outlier channel (axis 1)
    spec = activation_spec("int8", {"symmetric": True})
    t = _feed(qlab.quantize.observers.get("minmax"), [x])
    c = _feed(qlab.quantize.observers.get("minmax", granularity="channel", axis=1), [x])
    yt = RangeQuantizer(spec, *t.range())(x)
    lo, hi = c.range()
    yc = RangeQuantizer(spec, lo, hi, axis=1)(x)
    normal = [i for i in range(8) if i != 3]

    def sqnr(y):
        xs, ys = x[:, normal].double(), y[:, normal].double()
        return 10 * torch.log10((xs**2).sum() / ((xs - ys) ** 2).sum()).item()

    assert float(t.range()[1]) == float(hi[3])  # the tensor's range is the outlier channel's
    assert sqnr(yc) > sqnr(yt) + 30  # 100x finer steps on the normal channels: ~40 dB
    # per-channel = qlab.formats' own per-channel int8 on the transposed tensor (rows = channels)
    ref = formats.roundtrip(x.T.contiguous(), "int8", granularity="channel").T
    assert np.array_equal(yc.numpy(), ref)


# -- percentile -------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [90.0, 99.0, 99.9, 99.99])
def test_percentile_matches_numpy_within_one_bin(p):
    torch.manual_seed(6)
    bs = [torch.distributions.Laplace(0.0, 1.0 + i).sample((20000,)) for i in range(3)]  # later batches grow the range
    obs = _feed(qlab.quantize.observers.get("percentile", percentile=p), bs)
    x = torch.cat(bs).numpy()
    a = np.sort(np.abs(x))
    lo, hi = obs.range()
    w = float(obs.width[0])
    assert obs.hist.sum() == x.size  # growing the range re-bins without losing counts
    # the bin where the histogram's CDF reaches p holds the order statistic of rank ceil(p n)
    rank = int(np.ceil(p / 100 * x.size))
    assert abs(float(hi) - min(a[rank - 1], x.max())) <= w + 1e-6
    assert abs(float(lo) - max(-a[rank - 1], x.min())) <= w + 1e-6
    # np.percentile interpolates between the neighbouring order statistics
    ref = np.percentile(a, p)
    assert abs(float(hi) - ref) <= w + (a[rank] - a[rank - 2]) + 1e-6


def test_percentile_per_channel_matches_numpy():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(4000, 6, generator=g) * torch.arange(1, 7)
    obs = _feed(qlab.quantize.observers.get("percentile", granularity="channel", axis=1, percentile=99.0), [x[:2000], x[2000:]])
    ref = np.percentile(np.abs(x.numpy()), 99.0, axis=0)
    _, hi = obs.range()
    assert np.all(np.abs(hi - ref) <= obs.width + 1e-6)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=200), st.integers(0, 3))
def test_histogram_growth_keeps_every_count(values, split):
    x = torch.tensor(values, dtype=torch.float32)
    parts = [x[: len(x) * split // 4], x[len(x) * split // 4 :]]
    obs = _feed(qlab.quantize.observers.get("percentile", bins=64), parts)
    assert obs.hist.sum() == len(values)
    assert obs.top.item() >= np.abs(x.numpy()).max()
    lo, hi = obs.range()
    w = float(obs.width[0])
    assert x.min().item() - w <= lo <= hi <= x.max().item() + w


# -- entropy: brute force ------------------------------------------------------------------------------
def _brute_kl(hist: np.ndarray, start: int, nq: int) -> tuple[int, list[float]]:
    """TensorRT's entropy calibration written plainly (np.digitize, Counter, scipy.stats.entropy)."""
    bins = hist.astype(np.float64).copy()
    bins[0] = bins[1]
    kls = []
    for i in range(start, len(bins) + 1):
        space = np.linspace(0, i, num=nq + 1)
        dig = np.digitize(np.arange(i), space) - 1
        dig[bins[:i] == 0] = -1
        counts = np.zeros(nq)
        for j, d in enumerate(dig):
            if d != -1:
                counts[d] += bins[j]
        for key, val in Counter(dig.tolist()).items():
            if key != -1:
                counts[key] /= val
        q = np.array([counts[d] if d != -1 else 0.0 for d in dig])
        p = bins[:i].copy()
        p[-1] += bins[i:].sum()
        kls.append(entropy(p, q))
    kls = np.array(kls)
    return start + len(kls) - 1 - int(np.argmin(kls[::-1])), kls.tolist()


@pytest.mark.parametrize("seed,nq", [(0, 8), (1, 16), (2, 8), (3, 32)])
def test_kl_search_equals_brute_force(seed, nq):
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_t(3, 5000))
    hist, _ = np.histogram(x, bins=256, range=(0, x.max()))
    best, kls = _brute_kl(hist, 32, nq)
    cands, ours = kl_divergences(hist.astype(np.int64), 32, 1, nq)
    assert list(cands) == list(range(32, 257))
    np.testing.assert_allclose(ours, kls, rtol=1e-9, atol=1e-12)
    assert kl_argmin(hist, 32, 1, nq) == best


def test_entropy_observer_clips_heavy_tails_and_keeps_light_ones():
    rng = np.random.default_rng(4)
    heavy = torch.from_numpy(np.abs(rng.standard_t(2, 200000)).astype(np.float32))
    obs = _feed(qlab.quantize.observers.get("entropy"), [heavy])
    lo, hi = obs.range("int8")
    i = kl_argmin(obs.hist.numpy()[0], 128, 1, 256)  # non-negative data: 2**8 quantized bins
    assert hi == np.float32(i * obs.width[0]) and lo == heavy.min().item()
    assert hi < 0.5 * heavy.max().item()  # the far tail is clipped


# -- MSE: brute force on the samples, and PyTorch's HistogramObserver ---------------------------------
@pytest.mark.parametrize("dist", ["relu_laplace", "student_t3", "normal"])
def test_mse_observer_near_brute_force_and_not_worse_than_torch(dist):
    torch.manual_seed(8)
    g = torch.Generator().manual_seed(8)
    x = {"relu_laplace": torch.distributions.Laplace(0.0, 1.0).sample((30000,)).clamp(min=0),
         "student_t3": torch.distributions.StudentT(3.0).sample((30000,)),
         "normal": torch.randn(30000, generator=g)}[dist]  # fmt: skip
    spec = activation_spec("int8", {})  # asymmetric uint8 grid, as torch's quint8
    obs = _feed(qlab.quantize.observers.get("mse"), x.split(10000))

    def mse(lo, hi):
        return ((RangeQuantizer(spec, lo, hi)(x) - x) ** 2).double().mean().item()

    ours = mse(*obs.range(spec))
    # brute force: 400 clipping magnitudes straight on the samples
    amax = x.abs().max().item()
    brute = min(mse(max(x.min().item(), -c), min(x.max().item(), c)) for c in np.linspace(amax / 400, amax, 400))
    assert ours <= brute * 1.03
    th = _feed(TorchHistogramObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine), x.split(10000))
    s, z = th.calculate_qparams()
    theirs = ((torch.fake_quantize_per_tensor_affine(x, float(s), int(z), 0, 255) - x) ** 2).double().mean().item()
    assert ours <= theirs * 1.01
    mm = _feed(qlab.quantize.observers.get("minmax"), [x])
    assert ours <= mse(*mm.range()) * 1.001


def test_mse_observer_works_for_fp8():
    """FP8's error is relative, so clipping hardly pays: the search must at least not lose (histogram
    bin centres stand in for the values, hence the small tolerance)."""
    torch.manual_seed(9)
    x = torch.distributions.StudentT(3.0).sample((20000,))
    spec = activation_spec("fp8_e4m3", {})
    obs = _feed(qlab.quantize.observers.get("mse"), [x])
    lo, hi = obs.range(spec)
    err = ((RangeQuantizer(spec, lo, hi)(x) - x) ** 2).mean()
    mm = _feed(qlab.quantize.observers.get("minmax"), [x])
    assert err <= ((RangeQuantizer(spec, *mm.range())(x) - x) ** 2).mean() * 1.05


# -- registry and bad input ---------------------------------------------------------------------------
def test_get_names_and_aliases():
    assert qlab.quantize.observers.names() == ["minmax", "moving_average", "percentile", "mse", "entropy"]
    assert qlab.quantize.observers.get("KL").name == "entropy"
    assert isinstance(qlab.quantize.observers.get("ema"), qlab.quantize.observers.MovingAverageMinMaxObserver)
    with pytest.raises(ValueError, match="unknown observer 'kmeans'.*minmax"):
        qlab.quantize.observers.get("kmeans")
    with pytest.raises(ValueError, match="unknown option.*'pct'"):
        qlab.quantize.observers.get("percentile", pct=99)
    with pytest.raises(ValueError, match="granularity"):
        qlab.quantize.observers.get("minmax", granularity="row")


@pytest.mark.parametrize("name", ["minmax", "moving_average", "percentile", "mse", "entropy"])
def test_nan_input_and_no_data_raise(name):
    obs = qlab.quantize.observers.get(name)
    obs.where = "fc1"
    with pytest.raises(ValueError, match="seen no data"):
        obs.range()
    obs(torch.zeros(0))  # empty batches are skipped
    with pytest.raises(ValueError, match=r"fc1: batch 0 has 1 NaN/Inf"):
        obs(torch.tensor([1.0, float("nan"), 2.0]))
    with pytest.raises(ValueError, match="NaN/Inf"):
        obs(np.array([np.inf], np.float32))
    obs(np.array([1.0, -2.0], np.float32))
    lo, hi = obs.range()
    assert lo.shape == () and -2 <= lo <= hi <= 1


def test_channel_count_must_not_change():
    obs = qlab.quantize.observers.get("minmax", granularity="channel", axis=1)
    obs(torch.ones(2, 3))
    with pytest.raises(ValueError, match="4 channels, earlier batches had 3"):
        obs(torch.ones(2, 4))


def test_range_is_searched_once_per_setting(monkeypatch):
    """qparams() after range() reuses the search; a new batch, a changed setting or another format
    searches again (the mse search costs up to a second; the lesson 07 panel calls both)."""
    obs = qlab.quantize.observers.get("percentile")
    obs.observe(torch.randn(4096, generator=torch.Generator().manual_seed(0)))
    calls = []
    real = type(obs)._range
    monkeypatch.setattr(type(obs), "_range", lambda self, fmt: calls.append(str(fmt)) or real(self, fmt))
    spec = activation_spec("int4", {})
    lo, hi = obs.range(spec)
    obs.qparams(spec)
    assert len(calls) == 1
    lo[...] = 0  # the caller's copy
    assert obs.range(spec)[0] != 0 and len(calls) == 1
    obs.range(activation_spec("int8", {}))
    assert len(calls) == 2
    before = obs.range(spec)
    obs.percentile = 90.0
    assert obs.range(spec)[1] < before[1] and len(calls) == 4
    obs.observe(torch.full((10,), 100.0))
    obs.range(spec)
    assert len(calls) == 5
