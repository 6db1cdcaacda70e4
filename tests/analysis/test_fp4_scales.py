"""fp4_roundtrip reproduces qlab's mxfp4 and nvfp4 exactly, and the scale rules do what they say."""

import numpy as np
import pytest

import qlab
from qlab.analysis.fp4_scales import clipped_fraction, fp4_roundtrip


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(0)
    v = rng.standard_t(3, size=(64, 256)).astype(np.float32) * 0.05
    v[3, 17] = 3.8  # X = 2**(floor(log2 3.8) - 2) = 0.5 and 3.8 / 0.5 = 7.6 > 6: OCP's rule clips it
    return v


def test_reproduces_mxfp4_and_nvfp4(x):
    assert np.array_equal(fp4_roundtrip(x, 32, "pow2_floor"), qlab.formats.roundtrip(x, "mxfp4"))
    assert np.array_equal(fp4_roundtrip(x, 16, "e4m3"), qlab.formats.roundtrip(x, "nvfp4"))


def test_floor_rule_clips_ceil_and_fp32_do_not(x):
    blocks = np.abs(x).reshape(-1, 32).max(axis=1)
    y = np.abs(fp4_roundtrip(x, 32, "fp32")).reshape(-1, 32).max(axis=1)
    assert np.allclose(y, blocks, rtol=1e-6)  # amax / X = 6 exactly: every block maximum is kept
    scale = np.exp2(np.ceil(np.log2(blocks / 6)))[:, None]  # ceil rule: |x| / X <= 6, nothing saturates
    err = np.abs(fp4_roundtrip(x, 32, "pow2_ceil") - x).reshape(-1, 32)
    assert np.all(err <= scale * (1 + 1e-6))  # at most half the largest grid gap (4 -> 6), never a clip
    y = fp4_roundtrip(x, 32, "pow2_floor")
    assert y[3, 17] == 3.0  # clamped to 6 X = 3.0, an error of 0.8
    assert fp4_roundtrip(x, 32, "pow2_ceil")[3, 17] == 4.0  # X = 1: 3.8 rounds to the grid point 4
    assert 0 < clipped_fraction(x) < 1


def test_bad_arguments(x):
    with pytest.raises(ValueError, match="rule"):
        fp4_roundtrip(x, 32, "pow3")
    with pytest.raises(ValueError, match="multiple"):
        fp4_roundtrip(x[:, :40], 32)
