"""The linear-quantization panel (lesson 02): bits, symmetric/asymmetric and a clipping ratio over a
real tensor, with the grid drawn over the weight histogram and the error histogram.

The widget only wires controls to :func:`linear_state`, a pure function with unit tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.error import error_stats
from ..analysis.linear import linear_quantize
from ..formats.base import as_float32
from .live import Histogram, LiveFigure, hist_counts, set_vlines


def linear_state(x: Any, bits: int, symmetric: bool = True, clip: float = 1.0) -> dict[str, Any]:
    """What the panel shows: one scale for the whole tensor, ``bits``-bit codes, range shrunk by ``clip``.

    Keys: ``scale``, ``zero_point``, ``qmin``, ``qmax``, ``levels`` (every representable value,
    ascending), ``decoded``, ``clipped`` (fraction of values saturated), ``nbytes`` (packed codes +
    fp32 scale + a zero-point byte when asymmetric) and the error statistics (``sqnr_db``, ...).
    """
    x32 = as_float32(x)
    r = linear_quantize(x32, bits, symmetric, clip)
    s, z = float(r["scale"][0]), int(r["zero_point"][0])
    levels = (np.arange(r["qmin"], r["qmax"] + 1) - z).astype(np.float32) * np.float32(s)
    nbytes = -(-x32.size * bits // 8) + 4 + (0 if symmetric else 1)
    return {"bits": bits, "symmetric": symmetric, "clip": clip, "scale": s, "zero_point": z,
            "qmin": r["qmin"], "qmax": r["qmax"], "levels": levels, "decoded": r["decoded"],
            "clipped": r["clipped"], "nbytes": nbytes, "fp32_nbytes": 4 * x32.size,
            **error_stats(x32, r["decoded"])}


def readout(s: dict[str, Any]) -> str:
    """One line of text summarising a :func:`linear_state`."""
    kind = "symmetric" if s["symmetric"] else "asymmetric"
    return (f"{s['bits']}-bit {kind}, clip {s['clip']:.2f}: scale {s['scale']:.4g}, zero-point {s['zero_point']}, "
            f"codes {s['qmin']}..{s['qmax']}, {100 * s['clipped']:.2f}% clipped, SQNR {s['sqnr_db']:.2f} dB, "
            f"{s['fp32_nbytes'] / s['nbytes']:.2f}x smaller than fp32")


def plot_grid(ax, x: np.ndarray, levels: np.ndarray, bins: int = 201, max_lines: int = 64):
    """Histogram of ``x`` with the quantization levels as vertical lines (if not too many)."""
    v = np.asarray(x, np.float32).ravel()
    lim = float(max(np.abs(v).max(), np.abs(levels).max()))
    ax.hist(v, bins=bins, range=(-lim, lim), color="C7", alpha=0.8)
    ax.set_yscale("log")
    if len(levels) <= max_lines:
        for lv in levels:
            ax.axvline(lv, color="C3", lw=0.6, alpha=0.7)
    ax.set_xlabel("weight value (red: representable levels)")
    ax.set_ylabel("count")
    return ax


def linear_panel(x: Any, bits: int = 4):  # pragma: no cover - interactive wiring
    """An ipywidgets panel: bits slider, symmetric checkbox, clip slider; grid and error plots
    (a :class:`~qlab.viz.live.LiveFigure`: the artists are made once and moved on each change)."""
    import ipywidgets as w

    x32 = as_float32(x)
    b = w.IntSlider(value=bits, min=2, max=8, description="bits")
    sym = w.Checkbox(value=True, description="symmetric")
    clip = w.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="clip")
    text = w.HTML()
    live = LiveFigure(1, 2, figsize=(10, 3))
    ax0, ax1 = live.axes
    lim = float(np.abs(x32).max()) or 1.0
    counts, edges = hist_counts(x32, 201, -lim, lim)  # the weights never change: one histogram
    ax0.stairs(np.maximum(counts, 0.5), edges, fill=True, color="C7", alpha=0.8, baseline=0.5)
    ax0.set_yscale("log")
    ax0.set_ylim(0.8, counts.max() * 2)
    ax0.set_xlabel("weight value (red: representable levels)")
    ax0.set_ylabel("count")
    grid = ax0.vlines([], 0, 1, transform=ax0.get_xaxis_transform(), color="C3", lw=0.6, alpha=0.7)
    err = Histogram(ax1, bins=101)
    ax1.set_xlabel("quantization error  (x̂ − x)")
    ax1.set_ylabel("count")
    ax1.set_title("error")

    def redraw(*_):
        s = linear_state(x32, b.value, sym.value, clip.value)
        text.value = f"<b>{readout(s)}</b>"
        lv = s["levels"]
        set_vlines(grid, lv if len(lv) <= 64 else [])
        wide = float(max(lim, np.abs(lv).max()))
        ax0.set_xlim(-wide, wide)
        e = (s["decoded"].astype(np.float64) - x32).ravel()
        m = float(np.abs(e).max()) or 1.0
        err.update(e, -m, m)
        live.refresh()

    for c in (b, sym, clip):
        c.observe(redraw, "value")
    redraw()
    live.settle()
    live.refresh()
    return w.VBox([w.HBox([b, sym, clip]), text, live.widget])
