"""Linear quantization against torch's fake-quantize kernels and qlab's integer formats."""

import numpy as np
import pytest
import torch

import qlab
from qlab.analysis.linear import (
    clip_sweep,
    db_per_bit,
    granularity_table,
    inject_outlier,
    linear_quantize,
    sqnr_vs_bits,
)
from qlab.models import minilm_weights

W = minilm_weights("encoder.layer.1.attention.self.value.weight")


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("clip", [1.0, 0.5])
def test_matches_torch_fake_quantize(bits, symmetric, clip):
    r = linear_quantize(W, bits, symmetric, clip)
    ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(W), float(r["scale"][0]), int(r["zero_point"][0]),
                                                r["qmin"], r["qmax"]).numpy()
    assert np.array_equal(r["decoded"], ref)
    # the scale follows the min-max rule, shrunk by clip
    qmax = 2 ** (bits - 1) - 1
    if symmetric:
        assert r["scale"][0] == pytest.approx(clip * np.abs(W).max() / qmax, rel=1e-6)
    else:
        assert r["scale"][0] == pytest.approx(clip * (W.max() - W.min()) / (2**bits - 1), rel=1e-6)
    assert r["clipped"] == pytest.approx(np.mean(np.abs(r["decoded"] - W) > r["scale"][0] / 2 + 1e-7), abs=1e-3)


@pytest.mark.parametrize("gran", ["tensor", "channel", "group"])
def test_clip_one_is_qlab_int_format(gran):
    for b in (3, 4, 8):
        r = linear_quantize(W, b, True, granularity=gran, group_size=64)
        ref = qlab.roundtrip(W, f"int{b}", granularity=gran, group_size=64)
        assert np.array_equal(r["decoded"], ref)


def test_bad_arguments():
    with pytest.raises(ValueError):
        linear_quantize(W, 4, clip=0)
    with pytest.raises(ValueError):
        linear_quantize(W, 1)


def test_six_db_per_bit_on_a_gaussian():
    # granular regime: noise = step**2 / 12 with step = absmax / qmax, qmax = 2**(b-1) - 1 (restricted
    # symmetric range), so SQNR grows by 20 log10(qmax ratio) -- 6.02 dB per bit as qmax doubles
    x = np.random.default_rng(0).normal(size=200_000).astype(np.float32)
    fit = db_per_bit(sqnr_vs_bits(x, range(5, 9)))
    assert fit["slope_db_per_bit"] == pytest.approx(20 * np.log10(127 / 15) / 3, abs=0.03)
    fit = db_per_bit(sqnr_vs_bits(x, range(5, 9), symmetric=False))  # 2**b - 1 levels: closer to 6.02
    assert fit["slope_db_per_bit"] == pytest.approx(20 * np.log10(255 / 31) / 3, abs=0.03)
    with pytest.raises(ValueError):
        db_per_bit(sqnr_vs_bits(x, [4]))


def test_clip_sweep_has_an_interior_optimum():
    rows = clip_sweep(W, 4, [1.0, 0.7, 0.5, 0.3, 0.1])
    best = max(rows, key=lambda r: r["sqnr_db"])
    assert best["clip"] not in (1.0, 0.1) and rows[0]["clipped"] == 0
    assert [r["clipped"] for r in rows] == sorted(r["clipped"] for r in rows)


def test_outlier_and_granularity_table():
    y, idx = inject_outlier(W, 20.0)
    assert idx == (192, 192) and y[idx] == pytest.approx(20 * np.abs(W).max())
    assert np.array_equal(np.delete(y.ravel(), 192 * 384 + 192), np.delete(W.ravel(), 192 * 384 + 192))
    rows = {r["granularity"]: r for r in granularity_table(y, 4, (128, 32), exclude=idx)}
    # byte counts: codes at 4 bits + one fp32 scale per scale group
    assert rows["tensor"]["nbytes"] == W.size // 2 + 4
    assert rows["channel"]["nbytes"] == W.size // 2 + 4 * 384 and rows["channel"]["scales"] == 384
    assert rows["group 32"]["nbytes"] == W.size // 2 + 4 * W.size // 32
    # the outlier ruins the shared scale: per tensor collapses, small groups are barely touched
    rest = np.delete(W.ravel(), 192 * 384 + 192)
    e = qlab.roundtrip(y, "int4", granularity="tensor").ravel()
    expect = 10 * np.log10(np.sum(rest.astype(np.float64) ** 2) / np.sum((np.delete(e, 192 * 384 + 192) - rest) ** 2))
    assert rows["tensor"]["sqnr_rest_db"] == pytest.approx(expect, abs=1e-5)
    assert rows["tensor"]["sqnr_rest_db"] < 1 < rows["group 32"]["sqnr_rest_db"] - 10
