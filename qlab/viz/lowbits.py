"""Lesson 11's panel: pick a layer of SmolLM2 and a low-bit grid, see the error and the levels.

The widget only wires controls to :func:`lowbits_state`, a pure function with unit tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..analysis.error import error_stats
from ..analysis.lowbits import GRIDS, grid_roundtrip

#: grids offered per nominal width ("1.58" = ternary)
BY_BITS: dict[str, list[str]] = {
    "1.58": ["ternary absmean (BitNet b1.58)", "tq1_0", "tq2_0", "int2 g32 (symmetric: ternary absmax)"],
    "2": ["q2_k", "int2 g32 (asymmetric, 4 levels)"],
    "3": ["q3_k", "int3 g32"],
    "4": ["q4_k"],
    "8": ["q8_0"],
}


def lowbits_state(weights: Mapping[str, Any], layer: str, bits: str, grid: str | None = None) -> dict[str, Any]:
    """What the panel shows: ``weights[layer]`` on ``grid`` (first grid of ``bits`` if None or not
    of that width): decoded tensor, format used, bytes, bits/weight, error statistics, the
    number of distinct values per row (median) and the fraction of weights decoded to zero."""
    if layer not in weights:
        raise ValueError(f"unknown layer {layer!r}; choose one of {len(weights)} names")
    if bits not in BY_BITS:
        raise ValueError(f"bits must be one of {list(BY_BITS)}, got {bits!r}")
    options = BY_BITS[bits]
    grid = grid if grid in options else options[0]
    x = np.asarray(weights[layer], dtype=np.float32)
    y, nbytes, used = grid_roundtrip(x, GRIDS[grid])
    levels = [len(np.unique(r)) for r in y[: min(64, len(y))]]
    return {
        "options": options,
        "grid": grid,
        "used": used,
        "decoded": y,
        "nbytes": nbytes,
        "bits_per_weight": 8.0 * nbytes / x.size,
        "levels_per_row": float(np.median(levels)),
        "zero_fraction": float((y == 0).mean()),
        **error_stats(x, y),
    }


def readout(s: dict[str, Any]) -> str:
    fb = f" (stored as {s['used']})" if s["used"] not in s["grid"] else ""
    return (f"{s['grid']}{fb}: {s['bits_per_weight']:.3f} bits/weight, SQNR {s['sqnr_db']:.2f} dB, "
            f"{s['levels_per_row']:.0f} distinct values per row, {100 * s['zero_fraction']:.1f}% zeros")  # fmt: skip


def lowbits_panel(weights: Mapping[str, Any], layer: str | None = None):  # pragma: no cover - interactive wiring
    """An ipywidgets panel: layer picker, bits and grid dropdowns, error histogram and readout.

    A :class:`~qlab.viz.live.LiveFigure` with one in-place :class:`~qlab.viz.live.Histogram`;
    :func:`lowbits_state` runs once per (layer, bits, grid) and its readout and error histogram
    are remembered (not the decoded tensor); the settings one move from the start (every layer on
    the first grid, every grid of the first layer) are computed when the panel is made."""
    import ipywidgets as w

    from .live import Histogram, LiveFigure, hist_counts

    names = list(weights)
    pick = w.Dropdown(options=names, value=layer or names[0], description="layer")
    bits = w.Dropdown(options=list(BY_BITS), value="2", description="bits")
    grid = w.Dropdown(options=BY_BITS["2"], description="grid")
    text = w.HTML()
    seen: dict[tuple[str, str, str | None], tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]] = {}
    live = LiveFigure(1, 1, figsize=(8, 3))
    ax = live.axes[0]
    hist = Histogram(ax, bins=101)
    ax.set_xlabel("quantization error  (x̂ − x)")
    ax.set_ylabel("count")
    title = ax.set_title(" ")

    def remember(key: tuple[str, str, str | None]) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
        if key not in seen:
            s = lowbits_state(weights, *key)
            err = s.pop("decoded").astype(np.float64) - np.asarray(weights[key[0]], np.float64)
            lim = float(np.abs(err).max()) or 1.0
            seen[key] = seen[(key[0], key[1], s["grid"])] = (s, hist_counts(err, hist.bins, -lim, lim))
        return seen[key]

    # the moves one step from the start: every layer on the first grid, every grid of the first layer
    for name in names:
        remember((name, bits.value, grid.value))
    for b, options in BY_BITS.items():
        for g in options:
            remember((pick.value, b, g))

    def redraw(*_):
        options = BY_BITS[bits.value]  # a bits move leaves the previous width's grid in the picker
        s, (counts, edges) = remember((pick.value, bits.value, grid.value if grid.value in options else options[0]))
        if list(grid.options) != s["options"]:
            grid.unobserve(redraw, "value")
            grid.options = s["options"]
            grid.value = s["grid"]
            grid.observe(redraw, "value")
        text.value = f"<b>{readout(s)}</b>"
        hist.show(counts, edges)
        title.set_text(s["grid"])
        live.refresh()

    for c in (pick, bits, grid):
        c.observe(redraw, "value")
    redraw()
    live.settle()
    live.refresh()
    return w.VBox([w.HBox([pick, bits, grid]), text, live.widget])


__all__ = ["lowbits_state", "lowbits_panel", "readout", "BY_BITS"]
