"""The Pareto front of size vs accuracy, and its plot: bits per weight against a metric.

A point is on the Pareto front when no other point is at least as small *and* at least as
accurate, and strictly better in one of the two: the formats worth considering at their size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..files import save_figure

#: metrics for which larger is better (the Pareto front maximises them)
HIGHER_IS_BETTER = ("top1", "accuracy", "acc", "cosine", "overlap", "recall", "similarity", "agreement")


def higher_is_better(metric: str) -> bool:
    return any(k in metric.lower() for k in HIGHER_IS_BETTER)


def pareto_front(x: Sequence[float], y: Sequence[float], maximize_y: bool = False) -> np.ndarray:
    """Boolean mask of the non-dominated points, minimising ``x`` and minimising ``y``
    (maximising it with ``maximize_y``). Equal points do not dominate each other; NaNs are never
    on the front."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got {x.shape} and {y.shape}")
    if maximize_y:
        y = -y
    ok = ~(np.isnan(x) | np.isnan(y))
    # dominated[i] if some j has x_j <= x_i, y_j <= y_i and (x_j < x_i or y_j < y_i)
    le = (x[None, :] <= x[:, None]) & (y[None, :] <= y[:, None])
    lt = (x[None, :] < x[:, None]) | (y[None, :] < y[:, None])
    dominated = (le & lt & ok[None, :]).any(axis=1)
    return ok & ~dominated


def plot_pareto(
    result: Any,
    y: str | None = None,
    x: str = "bits_per_weight",
    ax: Any = None,
    path: str | os.PathLike | None = None,
    logy: bool | None = None,
    title: str | None = None,
) -> Any:
    """Scatter every format at (``x``, ``y``), join the Pareto front, label the points.

    ``result``: a sweep result (``rows``, ``metric``, ``model``) or a list of row dicts (then give
    ``y``). The float reference row, if any, is drawn as a dashed line. ``path``: also save the
    figure there (PNG, SVG, ...). Returns the axes.
    """
    rows = list(getattr(result, "rows", result))
    y = y or getattr(result, "metric", None)
    if y is None:
        raise ValueError("plot_pareto needs the metric name: pass y=...")
    maximize = getattr(result, "maximize", None)
    if maximize is None:
        maximize = higher_is_better(y)
    ref = next((r for r in rows if r.get("reference")), None)
    pts = [r for r in rows if not r.get("reference")]
    xs = np.array([r[x] for r in pts], np.float64)
    ys = np.array([r[y] for r in pts], np.float64)
    front = pareto_front(xs, ys, maximize) if len(pts) else np.zeros(0, bool)
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(7.5, 4.8), layout="constrained").subplots()
    ax.scatter(xs[~front], ys[~front], color="0.6", zorder=2, label="dominated")
    order = np.argsort(xs[front], kind="stable")
    ax.plot(xs[front][order], ys[front][order], "o-", color="C3", zorder=3, label="Pareto front")
    # labels: alternate above/below among points that share (almost) the same x
    span = float(np.ptp(xs)) if len(xs) else 1.0
    last_x, flip = None, False
    for i in np.argsort(xs, kind="stable"):
        flip = (not flip) if last_x is not None and abs(xs[i] - last_x) < 0.02 * (span or 1.0) else False
        last_x = xs[i]
        ax.annotate(str(pts[i].get("format", "")), (xs[i], ys[i]), textcoords="offset points",
                    xytext=(5, -11 if flip else 4), fontsize=8, color="C3" if front[i] else "0.35")  # fmt: skip
    if logy is None:
        logy = not maximize and len(ys) > 0 and bool(np.all(ys > 0)) and ys.max() / ys.min() > 20
    if ref is not None and y in ref and not (logy and ref[y] <= 0) and ref[y] != 0:
        ax.axhline(ref[y], color="0.3", ls="--", lw=1, label=f"float reference ({ref[y]:.4g})")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel({"bits_per_weight": "bits per weight"}.get(x, x))
    ax.set_ylabel(f"{y} ({'higher' if maximize else 'lower'} is better)")
    model = getattr(result, "model", "")
    ax.set_title(title or (f"{model}: size vs {y}" if model else f"size vs {y}"))
    ax.margins(x=0.08)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if path is not None:
        save_figure(ax.figure, path, dpi=150)  # temp file + rename: a failed save keeps the old plot
    return ax


__all__ = ["HIGHER_IS_BETTER", "higher_is_better", "pareto_front", "plot_pareto"]
