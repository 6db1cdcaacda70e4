"""Blitting for :class:`~qlab.viz.live.LiveFigure` panels whose axes and labels never change.

Drawing a figure with Agg costs mostly text: a panel with many tick labels (lesson 12's sixteen
backend names) spends ~150 ms a draw rasterising glyphs that are the same on every move.
:class:`Blit` draws the figure once without its moving artists (marked ``animated``, which
``Figure.draw`` skips), keeps that background, and on each move restores it and draws only the
moving artists on top (matplotlib's blitting: ``copy_from_bbox`` / ``restore_region`` /
``draw_artist``, https://matplotlib.org/stable/users/explain/animations/blitting.html).

Only valid while nothing outside ``artists`` changes (limits, ticks, texts): call :meth:`Blit.reset`
after such a change (and after ``LiveFigure.settle``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from .live import LiveFigure


class Blit:
    """Redraw only ``artists`` of ``live`` over a cached background; :meth:`refresh` sends the PNG."""

    def __init__(self, live: LiveFigure, artists: Sequence[Any]):
        if not artists:
            raise ValueError("artists must name at least one artist that moves, got none")
        for a in artists:
            if a.figure is not live.fig:
                raise ValueError(f"artist {a!r} is not in this LiveFigure")
            a.set_animated(True)
        self.live, self.artists = live, list(artists)
        self._background: Any = None

    def reset(self) -> None:
        """Forget the background (the next :meth:`png` draws the whole figure once more)."""
        self._background = None

    def png(self) -> bytes:
        """The figure now (background + moving artists), as PNG bytes (RGBA, zlib level 1)."""
        from PIL import Image

        canvas = self.live.fig.canvas
        if self._background is None:
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.live.fig.bbox)
        canvas.restore_region(self._background)
        for a in self.artists:
            self.live.fig.draw_artist(a)
        buf = io.BytesIO()
        Image.fromarray(np.asarray(canvas.buffer_rgba())).save(buf, format="png", compress_level=1)
        return buf.getvalue()

    def refresh(self) -> None:  # pragma: no cover - needs ipywidgets' Image; png() is the tested part
        """Send the new picture to the LiveFigure's widget (made on first use)."""
        self.live.widget.value = self.png()


__all__ = ["Blit"]
