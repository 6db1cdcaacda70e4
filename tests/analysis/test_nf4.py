"""NF4's levels rebuilt from normal quantiles equal qlab's table and bitsandbytes' own."""

from __future__ import annotations

import numpy as np
import pytest

from qlab.analysis.fp4_scales import clipped_fraction, mx_block_max
from qlab.analysis.nf4 import level_usage, nf4_levels
from qlab.formats.codebook import NF4_CODE


def test_nf4_levels_equal_the_table_bit_for_bit() -> None:
    assert np.array_equal(nf4_levels().view(np.uint32), NF4_CODE.view(np.uint32))


def test_nf4_levels_equal_bitsandbytes() -> None:
    from bitsandbytes.functional import get_4bit_type

    bnb = get_4bit_type("nf4", device="cpu").numpy()
    assert np.array_equal(np.sort(bnb), nf4_levels())


@pytest.mark.parametrize("bad", [0.5, 1.0, 1.2, float("nan"), "0.9"])
def test_nf4_levels_refuses_bad_offset(bad: object) -> None:
    with pytest.raises(ValueError, match="offset"):
        nf4_levels(bad)  # type: ignore[arg-type]


def test_level_usage() -> None:
    x = np.array([1.0, 0.5, -1.0, 0.0] * 16, np.float32)  # blocks of 64: absmax 1
    u = level_usage(x, np.array([-1, 0, 0.5, 1], np.float32), block=64)
    assert np.allclose(u, [0.25, 0.25, 0.25, 0.25])
    with pytest.raises(ValueError, match="block"):
        level_usage(np.ones(10, np.float32), np.array([0, 1], np.float32), block=64)


def test_mx_block_max_matches_the_clip_rule() -> None:
    a = np.array([1.0, 1.5, 1.6, 6.0, 7.9, 8.0])
    m = mx_block_max(a)
    assert list(m) == [1.5, 1.5, 1.5, 6.0, 6.0, 12.0]
    # a block whose maximum mx_block_max clips is what clipped_fraction counts
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32)).astype(np.float32)
    amax = np.abs(x).max(axis=1)
    assert clipped_fraction(x) == pytest.approx(np.mean(mx_block_max(amax) < amax))
    with pytest.raises(ValueError):
        mx_block_max(np.array([0.0]))
