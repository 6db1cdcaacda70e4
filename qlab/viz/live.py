"""Figures that redraw in place, for panels that answer within 150 ms (issue 16).

The straightforward panel -- ``plt.subplots`` inside the callback, draw everything, ``plt.show()``
into an ``Output`` widget -- pays on every move for a new figure, new axes, ``tight_layout`` (a
trial draw) and the PNG encoder of the inline backend: 250-450 ms on a 2-core machine. A
:class:`LiveFigure` is made once: its artists are created once (``stairs``, ``plot``, ``vlines``,
``text``) and a move only changes their data (``set_data``, ``set_segments``, ``set_text``), then
:meth:`LiveFigure.refresh` draws the figure off-screen with Agg once and sends the pixels as a PNG
(zlib level 3: 4 ms here, and no larger than the inline backend's) to an ``ipywidgets.Image``, a single widget message.

Blitting: artists marked ``animated`` (:meth:`LiveFigure.animate`) are left out of the figure's
draw; the rest -- axes, ticks, labels, static data, most of the cost -- is drawn once into a saved
background, and a move restores it and draws only the animated artists on top. The background is
kept per set of axes limits and positions (a panel that rescales among a few views draws each once),
so a panel that rescales stays correct; a panel that changes a *static* artist must call
:meth:`LiveFigure.invalidate`.

Nothing here needs a running front-end: :meth:`LiveFigure.png` is a pure function of the figure,
tested like the state functions. Widgets and PIL are imported lazily.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

#: the inline backend's resolution (matplotlib-inline): panels look as they did as PNG outputs
DPI = 72


class LiveFigure:
    """A matplotlib figure with a fixed grid of axes, rendered off-screen to PNG for an ``ipywidgets.Image``.

    ``nrows`` x ``ncols`` axes (``axes`` is a flat list, row-major), ``figsize`` in inches at
    :data:`DPI`. Call :meth:`settle` once after the first artists exist (``tight_layout`` then
    frozen, so later moves do not pay for a layout pass), and :meth:`refresh` after every update.
    """

    def __init__(self, nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (10.0, 3.0),
                 dpi: int = DPI, backgrounds: int = 16, **subplot_kw: Any):  # fmt: skip
        if not (isinstance(backgrounds, int) and backgrounds >= 1):
            raise ValueError(f"backgrounds must be an integer >= 1, got {backgrounds!r}")
        if not (isinstance(nrows, int) and isinstance(ncols, int) and nrows >= 1 and ncols >= 1):
            raise ValueError(f"nrows and ncols must be integers >= 1, got nrows={nrows!r}, ncols={ncols!r}")
        if len(figsize) != 2 or not all(np.isfinite(v) and v > 0 for v in figsize):
            raise ValueError(f"figsize must be two positive inches (width, height), got {figsize!r}")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.fig = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(self.fig)
        self.axes = list(np.ravel(self.fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)))
        self._widget: Any = None
        self.dynamic: list[Any] = []
        self._backgrounds: dict[Any, Any] = {}
        self.backgrounds = backgrounds
        self.full_draws = 0  # how often the background was drawn (tests check that moves reuse it)

    def animate(self, *artists: Any) -> None:
        """Mark ``artists`` as the moving part: drawn on top of the saved background on every
        :meth:`png`, in the order given, never into the background itself. (Artists made with
        ``animated=True`` -- e.g. a legend remade on each move -- are drawn too, after these, by z-order.)"""
        foreign = [a for a in artists if a.figure is not self.fig]
        if foreign:
            raise ValueError(f"animate: {foreign[0]!r} is not an artist of this LiveFigure")
        for a in artists:
            a.set_animated(True)
            if a not in self.dynamic:
                self.dynamic.append(a)

    def invalidate(self) -> None:
        """Forget the saved backgrounds (after changing a static artist): the next :meth:`png` draws in full."""
        self._backgrounds.clear()

    def _view_key(self) -> tuple:
        return tuple((tuple(ax.viewLim.bounds), tuple(ax.get_position().bounds), ax.get_xscale(), ax.get_yscale(),
                      ax.get_visible()) for ax in self.fig.axes)  # fmt: skip

    def settle(self) -> None:
        """Lay the axes out once (``tight_layout``) for the artists that exist now."""
        self.fig.tight_layout()
        self.invalidate()

    def draw(self) -> None:
        """Render the figure into the canvas' buffer: the saved background of the current view (one
        per set of axes limits and positions met, ``backgrounds`` at most; drawn in full when new)
        plus the animated artists."""
        canvas = self.fig.canvas
        extra = [a for ax in self.fig.axes for a in ax.get_children() if a.get_animated() and a not in self.dynamic]
        moving = self.dynamic + sorted(extra, key=lambda a: a.get_zorder())
        if not moving:
            canvas.draw()
            self.full_draws += 1
            return
        view = self._view_key()
        if view in self._backgrounds:
            canvas.restore_region(self._backgrounds[view])
        else:
            canvas.draw()  # a plain draw skips animated artists
            if len(self._backgrounds) >= self.backgrounds:
                self._backgrounds.pop(next(iter(self._backgrounds)))  # the oldest
            self._backgrounds[view] = canvas.copy_from_bbox(self.fig.bbox)
            self.full_draws += 1
        for a in moving:
            if a.get_visible():
                self.fig.draw_artist(a)

    def png(self) -> bytes:
        """The figure drawn now, as PNG bytes (RGBA, zlib level 3)."""
        from PIL import Image

        self.draw()
        buf = io.BytesIO()
        Image.fromarray(np.asarray(self.fig.canvas.buffer_rgba())).save(buf, format="png", compress_level=3)
        return buf.getvalue()

    @property
    def widget(self) -> Any:  # pragma: no cover - needs ipywidgets' comm; png() is the tested part
        """The ``ipywidgets.Image`` showing the figure (made on first use)."""
        if self._widget is None:
            import ipywidgets as w

            self._widget = w.Image(value=self.png(), format="png")
        return self._widget

    def refresh(self) -> None:
        """Redraw and send the new picture to the widget (if it was made)."""
        if self._widget is None:
            return
        self._widget.value = self.png()


def hist_counts(x: np.ndarray, bins: int, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of ``x`` in ``bins`` equal bins over ``[lo, hi]`` (a degenerate range is widened)."""
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(np.asarray(x, np.float64).ravel(), bins=bins, range=(lo, hi))
    return counts.astype(np.float64), edges


class Histogram:
    """A histogram drawn as one ``StepPatch`` (``ax.stairs``), updated in place by :meth:`update`.

    ``log``: counts on a log axis (empty bins drawn at 0.5, below the axis' floor of 0.8).
    """

    def __init__(self, ax: Any, bins: int = 101, log: bool = True, color: str = "C0", label: str | None = None):
        if not (isinstance(bins, int) and bins >= 1):
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        self.ax, self.bins, self.log = ax, bins, log
        self.patch = ax.stairs(np.zeros(bins), np.linspace(-1, 1, bins + 1), fill=True, color=color, alpha=0.85,
                               label=label, baseline=0.5 if log else 0)  # fmt: skip
        if log:
            ax.set_yscale("log")

    def update(self, x: np.ndarray, lo: float, hi: float) -> None:
        """Show the histogram of ``x`` over ``[lo, hi]``."""
        self.show(*hist_counts(x, self.bins, lo, hi))

    def show(self, counts: np.ndarray, edges: np.ndarray) -> None:
        """Show counts computed earlier (:func:`hist_counts`; panels remember them per setting)."""
        self.patch.set_data(np.maximum(counts, 0.5) if self.log else counts, edges)
        self.ax.set_xlim(edges[0], edges[-1])
        top = max(float(counts.max()), 1.0)
        self.ax.set_ylim((0.8, top * 2.0) if self.log else (0.0, top * 1.05))


def set_vlines(lines: Any, xs: Sequence[float] | np.ndarray, ymin: float = 0.0, ymax: float = 1.0) -> None:
    """Move a ``LineCollection`` made by ``ax.vlines`` (axes-fraction y via ``get_xaxis_transform``)
    to the positions ``xs``."""
    xs = np.asarray(xs, np.float64).ravel()
    lines.set_segments([((v, ymin), (v, ymax)) for v in xs])


__all__ = ["DPI", "Histogram", "LiveFigure", "hist_counts", "set_vlines"]
