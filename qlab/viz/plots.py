"""Matplotlib plots shared by the lessons. Each takes an ``ax`` so panels can compose them."""

from __future__ import annotations

import numpy as np


def plot_error_histogram(ax, x: np.ndarray, y: np.ndarray, label: str = "", bins: int = 101,
                         lim: float | None = None):
    """Histogram of the quantization error ``y - x`` (log-scaled counts) over ``[-lim, lim]``
    (default: the largest |error|; pass one ``lim`` to several axes to compare them)."""
    err = (np.asarray(y, np.float64) - np.asarray(x, np.float64)).ravel()
    if lim is None:
        lim = float(np.max(np.abs(err))) if err.size else 1.0
    lim = lim if lim > 0 else 1.0
    ax.hist(err, bins=bins, range=(-lim, lim), color="C0", alpha=0.85)
    ax.set_yscale("log")
    ax.set_xlabel("quantization error  (x̂ − x)")
    ax.set_ylabel("count")
    if label:
        ax.set_title(label)
    return ax
