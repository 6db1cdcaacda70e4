"""The formats-tour panel (lesson 00): a bits slider and a format dropdown over a real tensor.

The widget only wires controls to :func:`tour_state`, a pure function with unit tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import formats
from ..analysis.error import error_stats, formats_with_bits
from .plots import plot_error_histogram


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
    """An ipywidgets panel: bits slider, format dropdown, error histogram and readout."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    x = formats.base.as_float32(x)
    slider = w.IntSlider(value=bits, min=2, max=8, description="bits")
    dropdown = w.Dropdown(description="format")
    text = w.HTML()
    out = w.Output()

    def redraw(*_):
        s = tour_state(x, slider.value, dropdown.value)
        if list(dropdown.options) != s["options"]:
            dropdown.unobserve(redraw, "value")
            dropdown.options = s["options"]
            dropdown.value = s["format"]
            dropdown.observe(redraw, "value")
        text.value = f"<b>{readout(s)}</b><br>{s['description']}<br><code>{s['layout']}</code>"
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7, 3))
            plot_error_histogram(ax, x, s["decoded"], label=f"error of {s['format']}")
            plt.show()

    slider.observe(redraw, "value")
    dropdown.observe(redraw, "value")
    redraw()
    return w.VBox([w.HBox([slider, dropdown]), text, out])
