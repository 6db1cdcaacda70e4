"""In-place parts for :class:`~qlab.viz.live.LiveFigure` panels beyond those of :mod:`qlab.viz.live`
(issue 16): a bar chart whose bars, labels and annotations move instead of being redrawn, a memo for
the panels' state keyed by the control values, axis limits that take few values (so a blitting
``LiveFigure`` reuses its backgrounds) and a one-thread context for the panels' small torch work.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the body with one torch intra-op thread, then restore the count: a panel's small tensor
    operations lose more to thread hand-offs than they gain (on the shared 2-core machine, with torch
    defaulting to 4 threads, a digits-cnn PTQ + evaluation takes 0.2-0.9 s instead of 0.07 s)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


_NICE = np.array([1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0])


def nice_ceil(v: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is >= ``v`` (> 0):
    an axis limit that takes few distinct values, so a :class:`~qlab.viz.live.LiveFigure` reuses its backgrounds."""
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"v must be a positive finite number, got {v!r}")
    e = np.floor(np.log10(v))
    m = v / 10.0**e
    return float(_NICE[np.searchsorted(_NICE, m * (1 - 1e-12))] * 10.0**e)


class Bars:
    """``n`` bars made once by ``ax.bar``; :meth:`update` sets the first ``len(values)`` heights,
    tick labels and the text above each bar, and hides the others (``n``: the most bars shown)."""

    def __init__(self, ax: Any, n: int, colors: Sequence[str] | None = None, fontsize: float = 8):
        if not (isinstance(n, int) and n >= 1):
            raise ValueError(f"n must be an integer >= 1 (the most bars shown), got {n!r}")
        self.ax, self.n = ax, n
        self.bars = ax.bar(range(n), np.zeros(n), color=list(colors)[:n] if colors else None)
        self.notes = [ax.annotate("", (i, 0.0), ha="center", va="bottom", fontsize=fontsize) for i in range(n)]
        ax.set_xticks(range(n))

    def update(self, labels: Sequence[str], values: Sequence[float], notes: Sequence[str] | None = None) -> None:
        if len(labels) != len(values) or len(values) > self.n:
            raise ValueError(f"labels and values must have the same length <= {self.n}, "
                             f"got {len(labels)} labels and {len(values)} values")
        notes = list(notes) if notes is not None else [""] * len(values)
        k = len(values)
        vals = np.asarray(values, np.float64)
        for i, (bar, note) in enumerate(zip(self.bars, self.notes, strict=True)):
            shown = i < k
            bar.set_visible(shown)
            note.set_visible(shown)
            if shown:
                bar.set_height(vals[i])
                note.set_text(notes[i])
                note.xy = note.xyann = (bar.get_x() + bar.get_width() / 2, vals[i])
        self.ax.set_xticks(range(k), list(labels))
        self.ax.set_xlim(-0.6, k - 0.4)
        fin = vals[np.isfinite(vals)]
        lo, hi = (min(0.0, float(fin.min())), max(0.0, float(fin.max()))) if fin.size else (0.0, 1.0)
        pad = 0.12 * (hi - lo or 1.0)
        self.ax.set_ylim(lo - (pad if lo < 0 else 0.0), hi + pad)


class Memo:
    """``memo(key, fn)``: ``fn()`` the first time ``key`` is asked for, the stored result afterwards
    (the panels' state for one setting of their controls)."""

    def __init__(self) -> None:
        self.store: dict[Hashable, Any] = {}

    def __call__(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        if key not in self.store:
            self.store[key] = fn()
        return self.store[key]


__all__ = ["Bars", "Memo", "nice_ceil", "one_thread"]
