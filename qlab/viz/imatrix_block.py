"""Lesson 16's block panel: pick a layer, a row and a 32-value block, see the scale llama.cpp's
encoder picks without and with the importance matrix, the decoded values and the errors
(:func:`qlab.analysis.imatrix_block.block_choice`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..analysis.imatrix_block import BLOCK_TYPES, QK, BlockChoice, block_choice


def block_state(weights: Mapping[str, np.ndarray], importance: Mapping[str, np.ndarray], layer: str, row: int,
                block: int, fmt: str = "q4_0") -> dict[str, Any]:  # fmt: skip
    """The panel's state: the :class:`BlockChoice`, its errors and the readout line (pure)."""
    if layer not in weights or layer not in importance:
        raise ValueError(f"layer {layer!r} has no weight or importance vector; layers: {sorted(weights)[:4]} ...")
    b = block_choice(weights[layer], importance[layer], row, block, fmt)
    e = b.errors()
    ratio = e["weighted_imatrix"] / e["weighted_plain"] if e["weighted_plain"] > 0 else float("nan")
    text = (f"{layer} row {row} block {block}, {fmt}: scale {b.scale_plain:+.5f} without imatrix, "
            f"{b.scale_imatrix:+.5f} with; weighted error {e['weighted_plain']:.3e} -> {e['weighted_imatrix']:.3e} "
            f"({ratio:.2f}x), unweighted {e['sq_plain']:.3e} -> {e['sq_imatrix']:.3e}")  # fmt: skip
    return {"choice": b, "errors": e, "text": text}


def plot_block(ax: Any, b: BlockChoice) -> Any:
    """The block's 32 weights, their two decodings, and the importance of each column (grey bars)."""
    j = np.arange(QK)
    imp = b.importance / b.importance.max() if b.importance.max() > 0 else b.importance
    lim = float(np.abs(b.x).max()) or 1.0
    ax.bar(j, imp * lim, bottom=-lim, color="0.85", width=0.8, label="importance (scaled)")
    ax.plot(j, b.x, "o", color="k", ms=4, label="weight")
    ax.plot(j, b.y_plain, "_", color="C0", ms=12, mew=2, label=f"no imatrix (d {b.scale_plain:+.4f})")
    ax.plot(j, b.y_imatrix, "_", color="C3", ms=12, mew=2, label=f"imatrix (d {b.scale_imatrix:+.4f})")
    ax.set_xlabel("column in the block")
    ax.set_ylabel("value")
    ax.set_ylim(-1.1 * lim, 1.1 * lim)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    return ax


def block_panel(weights: Mapping[str, np.ndarray], importance: Mapping[str, np.ndarray], layer: str | None = None,
                row: int = 0, block: int = 0) -> Any:  # pragma: no cover - interactive wiring  # fmt: skip
    """Layer, type, row and block controls over :func:`plot_block`, drawn once on a
    :class:`~qlab.viz.live.LiveFigure` and updated in place (bar heights, markers, legend labels)."""
    import ipywidgets as W

    from .live import LiveFigure

    names = [n for n in weights if n in importance]
    first = layer if layer in names else names[0]
    rows, cols = weights[first].shape
    lay = W.Dropdown(options=names, value=first, description="layer")
    fmt = W.Dropdown(options=list(BLOCK_TYPES), value="q4_0", description="type")
    r = W.IntSlider(value=row, min=0, max=rows - 1, description="row")
    blk = W.IntSlider(value=block, min=0, max=cols // QK - 1, description="block")
    text = W.HTML()
    live = LiveFigure(1, 1, figsize=(9, 3))
    ax = live.axes[0]
    plot_block(ax, block_state(weights, importance, first, row, block)["choice"])
    bars = ax.patches[:QK]
    dots, plain, imat = ax.lines[:3]
    texts = {t.get_text().split(" (d ")[0]: t for t in ax.get_legend().get_texts()}  # legend order is matplotlib's

    def redraw(*_: Any) -> None:
        s = block_state(weights, importance, lay.value, r.value, blk.value, fmt.value)
        b = s["choice"]
        text.value = f"<b>{s['text']}</b>"
        imp = b.importance / b.importance.max() if b.importance.max() > 0 else b.importance
        lim = float(np.abs(b.x).max()) or 1.0
        for bar, h in zip(bars, imp * lim, strict=True):
            bar.set_y(-lim)
            bar.set_height(h)
        dots.set_ydata(b.x)
        plain.set_ydata(b.y_plain)
        imat.set_ydata(b.y_imatrix)
        plain.set_label(f"no imatrix (d {b.scale_plain:+.4f})")
        imat.set_label(f"imatrix (d {b.scale_imatrix:+.4f})")
        texts["no imatrix"].set_text(plain.get_label())
        texts["imatrix"].set_text(imat.get_label())
        ax.set_ylim(-1.1 * lim, 1.1 * lim)
        live.refresh()

    for c in (lay, fmt, r, blk):
        c.observe(redraw, "value")
    live.settle()
    redraw()
    return W.VBox([W.HBox([lay, fmt]), W.HBox([r, blk]), text, live.widget])


__all__ = ["block_panel", "block_state", "plot_block"]
