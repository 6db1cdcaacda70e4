"""Matplotlib plots shared by the lessons. Each takes an ``ax`` so panels can compose them."""

from __future__ import annotations

import numpy as np


def plot_error_histogram(ax, x: np.ndarray, y: np.ndarray, label: str = "", bins: int = 101,
                         lim: float | None = None, log: bool = True):
    """Histogram of the quantization error ``y - x`` over ``[-lim, lim]`` (default: the largest
    |error|; pass one ``lim`` to several axes to compare them), counts on a log axis unless
    ``log=False`` (a linear axis from 0 shows a flat histogram as flat)."""
    err = (np.asarray(y, np.float64) - np.asarray(x, np.float64)).ravel()
    if lim is None:
        lim = float(np.max(np.abs(err))) if err.size else 1.0
    lim = lim if lim > 0 else 1.0
    ax.hist(err, bins=bins, range=(-lim, lim), color="C0", alpha=0.85)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("quantization error  (x̂ − x)")
    ax.set_ylabel("count")
    if label:
        ax.set_title(label)
    return ax
