"""The formats-tour panel (lesson 00): a bits slider and a format dropdown over a real tensor.

The widget only wires controls to :func:`tour_state`, a pure function with unit tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import formats
from ..analysis.error import error_stats, formats_with_bits


def tour_state(x: np.ndarray, bits: int, name: str | None = None) -> dict[str, Any]:
    """What the panel shows for ``bits`` and format ``name`` (first format of that width if None).

    Returns the formats offered at that width, the chosen one, its decoded tensor, bytes and
    error statistics, and the fp32 bytes for comparison.
    """
    x = formats.base.as_float32(x)
    options = formats_with_bits(bits, row_length=x.shape[-1])
    if not options:
        raise ValueError(f"no registered format has {bits} to {bits + 1} bits per weight for rows of {x.shape[-1]}")
    name = name if name in options else options[0]
    fmt = formats.get(name)
    enc = fmt.encode(x)
    y = fmt.decode(enc)
    return {
        "options": options,
        "format": name,
        "description": fmt.description,
        "layout": fmt.layout().formula,
        "decoded": y,
        "nbytes": enc.nbytes,
        "fp32_nbytes": x.size * 4,
        "bits_per_weight": enc.bits_per_weight,
        **error_stats(x, y),
    }


def readout(s: dict[str, Any]) -> str:
    """One line of text summarising a :func:`tour_state`."""
    return (
        f"{s['format']}: {s['bits_per_weight']:.3f} bits/weight, {s['nbytes'] / 1024:.1f} KiB "
        f"({s['fp32_nbytes'] / s['nbytes']:.2f}x smaller than fp32), SQNR {s['sqnr_db']:.2f} dB, "
        f"max |err| {s['max_abs_err']:.4g}"
    )


def formats_tour(x: np.ndarray, bits: int = 4):  # pragma: no cover - interactive wiring
    """An ipywidgets panel: bits slider, format dropdown, error histogram and readout (a
    :class:`~qlab.viz.live.LiveFigure`; each format's readout and error histogram computed once)."""
    import ipywidgets as w

    from .live import Histogram, LiveFigure, hist_counts
    from .live_parts1 import Memo

    x = formats.base.as_float32(x)
    slider = w.IntSlider(value=bits, min=2, max=8, description="bits")
    dropdown = w.Dropdown(description="format")
    text = w.HTML()
    live = LiveFigure(1, 1, figsize=(7, 3))
    ax = live.axes[0]
    hist = Histogram(ax, bins=101)
    ax.set_xlabel("quantization error  (x̂ − x)")
    ax.set_ylabel("count")
    title = ax.set_title("")
    memo = Memo()
    shown: list[Any] = []  # the Image, once the layout is settled

    def compute(b: int, name: str | None) -> dict[str, Any]:
        s = tour_state(x, b, name)
        err = s["decoded"].astype(np.float64) - x
        lim = float(np.abs(err).max()) or 1.0
        counts, edges = hist_counts(err, hist.bins, -lim, lim)  # plot_error_histogram's bins and range
        html = f"<b>{readout(s)}</b><br>{s['description']}<br><code>{s['layout']}</code>"
        return {"options": s["options"], "format": s["format"], "html": html, "counts": counts, "edges": edges}

    def options(b: int) -> list[str]:
        return memo(("options", b), lambda: formats_with_bits(b, row_length=x.shape[-1]))

    def redraw(*_):
        b = slider.value
        opts = options(b)
        name = dropdown.value if dropdown.value in opts else (opts[0] if opts else None)
        s = memo((b, name), lambda: compute(b, name))
        if list(dropdown.options) != s["options"]:
            dropdown.unobserve(redraw, "value")
            dropdown.options = s["options"]
            dropdown.value = s["format"]
            dropdown.observe(redraw, "value")
        text.value = s["html"]
        hist.show(s["counts"], s["edges"])
        title.set_text(f"error of {s['format']}")
        if shown:  # each setting's picture drawn once: a return to it only swaps the PNG
            shown[0].value = memo(("png", b, s["format"]), live.png)

    for name in options(slider.value):  # the starting width's formats up front (~0.8 s): the dropdown answers at once
        memo((slider.value, name), lambda name=name: compute(slider.value, name))
    slider.observe(redraw, "value")
    dropdown.observe(redraw, "value")
    redraw()
    live.settle()
    shown.append(w.Image(format="png"))
    redraw()
    return w.VBox([w.HBox([slider, dropdown]), text, shown[0]])
