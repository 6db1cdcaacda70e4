"""Lesson 05's two figures: NF4's levels against a real weight distribution, and MX's scale rule.

The numbers come from :mod:`qlab.analysis.nf4` and :mod:`qlab.analysis.fp4_scales` (tested); these
functions only draw them on a matplotlib ``Axes``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.fp4_scales import mx_block_max
from ..analysis.nf4 import level_usage, nf4_levels


def plot_nf4_levels(ax: Any, w: np.ndarray, block: int = 64) -> dict[str, float]:
    """Histogram of ``w / absmax`` per block of ``block`` (bitsandbytes' scaling) with the NF4 levels
    and 16 uniform levels over it; returns the entropy (bits) of each grid's code usage on ``w``: 4
    bits when all 16 codes are equally used, less when values crowd onto a few of them."""
    x = np.asarray(w, np.float32).ravel()
    b = x[: x.size - x.size % block].reshape(-1, block)
    y = (b / np.abs(b).max(axis=1, keepdims=True)).ravel()
    ax.hist(y, bins=120, range=(-1, 1), color="0.75", density=True, label=f"weights / block absmax ({block})")
    nf4 = nf4_levels()
    uni = np.linspace(-1, 1, 16, dtype=np.float32)
    for lv in nf4:
        ax.axvline(lv, color="tab:red", lw=1.2, ymax=0.9)
    for lv in uni:
        ax.axvline(lv, color="tab:blue", lw=1, ls=":", ymax=0.6)
    ax.plot([], [], color="tab:red", label="NF4 levels (normal quantiles)")
    ax.plot([], [], color="tab:blue", ls=":", label="16 uniform levels")
    ax.set_xlabel("value / block absmax")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, loc="upper left")

    def entropy(levels: np.ndarray) -> float:
        p = level_usage(x[: b.size], levels, block)
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    return {"nf4_bits": entropy(nf4), "uniform_bits": entropy(uni)}


def plot_mx_scale_rule(ax: Any, lo: float = 0.5, hi: float = 32.0) -> None:
    """For block maxima ``amax`` in [lo, hi] (log axis): the largest value an MXFP4 block can hold
    under OCP's ``floor(log2)`` rule, against ``amax`` itself (NVFP4's E4M3 scale follows ``amax``
    within its 3-bit mantissa). Where the MX line is under the diagonal, the block maximum is clipped."""
    a = np.geomspace(lo, hi, 2000)
    m = mx_block_max(a)
    ax.plot(a, a, color="0.4", lw=1, ls="--", label="block maximum (what a scale of amax/6 keeps)")
    ax.plot(a, m, color="tab:red", lw=1.5, label="largest MXFP4 value: 6 * 2^(floor(log2 amax) - 2)")
    ax.fill_between(a, m, a, where=m < a, color="tab:red", alpha=0.15, label="clipped")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("block maximum |x| (log2 axis)")
    ax.set_ylabel("largest value kept")
    ax.legend(fontsize=8, loc="upper left")


__all__ = ["plot_nf4_levels", "plot_mx_scale_rule"]
