"""The model-size calculator panel (lesson 01): parameters x format -> bytes, and the time to
stream them once at a memory bandwidth. The widget only wires controls to :func:`size_state`."""

from __future__ import annotations

from typing import Any

from .. import formats
from ..analysis.size import effective_bits, stream_seconds


def format_bits(fmt: str, row_length: int | None = None) -> float:
    """Bits per weight of ``fmt`` with its default options, scales included (``"fp32"``: 32)."""
    if fmt in ("fp32", "f32", "float32"):
        return 32.0
    return effective_bits(fmt, row_length=row_length)


def size_state(n_params: int, fmt: str, gb_per_s: float, row_length: int | None = None) -> dict[str, Any]:
    """What the calculator shows: bits per weight (scales included), bytes, GB, ratio to fp32,
    seconds to read the weights once at ``gb_per_s`` and the implied tokens/s ceiling."""
    bits = format_bits(fmt, row_length)
    nbytes = n_params * bits / 8.0
    s = stream_seconds(nbytes, gb_per_s)
    return {"format": fmt, "params": int(n_params), "bits_per_weight": bits, "bytes": nbytes,
            "gb": nbytes / 1e9, "vs_fp32": 32.0 / bits, "seconds": s, "tokens_per_s": 1.0 / s}


def readout(s: dict[str, Any]) -> str:
    """One line of text summarising a :func:`size_state`."""
    return (f"{s['params']:,} weights in {s['format']} ({s['bits_per_weight']:.3f} bits/weight): "
            f"{s['gb']:.3g} GB, {s['vs_fp32']:.2f}x smaller than fp32; one read takes "
            f"{s['seconds'] * 1e3:.3g} ms -> at most {s['tokens_per_s']:.3g} tokens/s")


def size_panel(models: dict[str, int], row_length: int | None = None):  # pragma: no cover - interactive wiring
    """An ipywidgets panel: model (``{label: parameter count}``), format, bandwidth (GB/s)."""
    import ipywidgets as w

    names = ["fp32", *[n for n in formats.names()
                       if n not in ("e8m0",) and (row_length is None or formats.get(n).accepts_row(row_length))]]
    model = w.Dropdown(options=list(models), description="model")
    fmt = w.Dropdown(options=names, value="fp16", description="format")
    bw = w.FloatLogSlider(value=100, base=10, min=0, max=4, step=0.05, description="GB/s")
    text = w.HTML()

    def redraw(*_):
        text.value = f"<b>{readout(size_state(models[model.value], fmt.value, bw.value, row_length))}</b>"

    for c in (model, fmt, bw):
        c.observe(redraw, "value")
    redraw()
    return w.VBox([w.HBox([model, fmt, bw]), text])
