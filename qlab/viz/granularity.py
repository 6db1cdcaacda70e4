"""The granularity panel (lesson 03): inject one outlier into a real tensor and compare one scale per
tensor, per row (channel) and per group: SQNR of the other values, and the bytes each choice costs.

The widget only wires controls to :func:`granularity_state`, a pure function with unit tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.linear import granularity_table, inject_outlier
from ..formats.base import as_float32


def granularity_state(x: Any, bits: int = 4, factor: float = 1.0, group_size: int = 32,
                      index: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Rows of :func:`~qlab.analysis.linear.granularity_table` for ``x`` with one value set to
    ``factor * max|x|`` (``factor <= 1``: the tensor unchanged), symmetric ``int{bits}``.

    Keys: ``rows`` (granularity, scales, nbytes, bits_per_weight, sqnr_db, sqnr_rest_db),
    ``index`` of the outlier (None when unchanged), ``outlier`` (its value), ``absmax`` (of the original).
    """
    x32 = as_float32(x)
    if factor > 1:
        y, idx = inject_outlier(x32, factor, index)
        value = float(y[idx])
    else:
        y, idx, value = x32, None, float("nan")
    rows = granularity_table(y, bits, (128, group_size) if group_size != 128 else (128,), exclude=idx)
    return {"rows": rows, "index": idx, "outlier": value, "absmax": float(np.abs(x32).max()), "bits": bits}


def readout(s: dict[str, Any]) -> str:
    """Text lines (one per granularity) of a :func:`granularity_state`."""
    head = ("no outlier" if s["index"] is None else
            f"one outlier {s['outlier']:.4g} at {s['index']} ({s['outlier'] / s['absmax']:.1f}x the original max)")
    lines = [f"{s['bits']}-bit symmetric, {head}"]
    for r in s["rows"]:
        lines.append(f"{r['granularity']:<10} {r['scales']:>7} scales  {r['bits_per_weight']:6.3f} bits/w  "
                     f"SQNR of the other values {r['sqnr_rest_db']:6.2f} dB")
    return "\n".join(lines)


def plot_granularity(ax, s: dict[str, Any]):
    """Bar chart: SQNR of the non-outlier values per granularity, labelled with bits per weight."""
    labels = [r["granularity"] for r in s["rows"]]
    vals = [r["sqnr_rest_db"] for r in s["rows"]]
    bars = ax.bar(labels, vals, color=["C3", "C1", "C0", "C2", "C4"][: len(vals)])
    for b, r in zip(bars, s["rows"], strict=True):
        ax.annotate(f"{r['bits_per_weight']:.3f} b/w", (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("SQNR of the other values (dB)")
    return ax


def granularity_panel(x: Any, bits: int = 4):  # pragma: no cover - interactive wiring
    """An ipywidgets panel: outlier factor, bits and group size; SQNR bars per granularity
    (a :class:`~qlab.viz.live.LiveFigure`: the bars are moved in place, each setting computed once)."""
    import ipywidgets as w

    from .live import LiveFigure
    from .live_parts1 import Bars, Memo

    x32 = as_float32(x)
    factor = w.FloatLogSlider(value=1, base=10, min=0, max=2, step=0.05, description="outlier ×max")
    b = w.IntSlider(value=bits, min=2, max=8, description="bits")
    g = w.Dropdown(options=[16, 32, 64, 128], value=32, description="group")
    text = w.HTML()
    live = LiveFigure(1, 1, figsize=(7, 3))
    ax = live.axes[0]
    bars = Bars(ax, 4, colors=["C3", "C1", "C0", "C2"])
    ax.set_ylabel("SQNR of the other values (dB)")
    memo = Memo()
    shown: list[Any] = []  # the Image, once the layout is settled

    def redraw(*_):
        key = (b.value, round(factor.value, 6), g.value)
        s = memo(key, lambda: granularity_state(x32, b.value, factor.value, g.value))
        text.value = "<pre>" + readout(s) + "</pre>"
        bars.update([r["granularity"] for r in s["rows"]], [r["sqnr_rest_db"] for r in s["rows"]],
                    [f"{r['bits_per_weight']:.3f} b/w" for r in s["rows"]])
        if shown:  # each setting's picture drawn once: a return to it only swaps the PNG
            shown[0].value = memo(("png", *key), live.png)

    for c in (factor, b, g):
        c.observe(redraw, "value")
    redraw()
    live.settle()
    shown.append(w.Image(format="png"))
    redraw()
    return w.VBox([w.HBox([factor, b, g]), text, shown[0]])
