"""Blitting in qlab.viz.live.LiveFigure (a blitted picture equals one drawn from scratch) and the in-place parts of live_parts1."""

import numpy as np
import pytest

from qlab.viz.live import LiveFigure
from qlab.viz.live_parts1 import Bars, Memo

V = np.linspace(-3, 3, 301)


def _fig(y: np.ndarray, ylim: tuple[float, float]) -> tuple[LiveFigure, object]:
    live = LiveFigure(1, 2, figsize=(6, 2.5))
    (line,) = live.axes[0].plot(V, y)
    live.axes[1].plot(V, V**2)
    title = live.axes[0].set_title("start")
    live.animate(line, title)
    live.settle()  # the same layout for every ylim
    live.axes[0].set_ylim(*ylim)
    return live, line


def test_blit_equals_a_fresh_draw_and_leaves_no_trace():
    live, line = _fig(np.sin(V), (-1.5, 1.5))
    first = live.png()
    for k in range(1, 4):  # move the line and the title in place: the background is reused
        line.set_ydata(np.sin(k * V))
        live.axes[0].title.set_text(f"k={k}")
        moved = live.png()
    assert live.full_draws == 1 and moved != first
    fresh, fline = _fig(np.sin(3 * V), (-1.5, 1.5))
    fresh.axes[0].title.set_text("k=3")
    assert fresh.png() == moved  # no trace of the earlier lines or titles
    line.set_ydata(np.sin(V))
    live.axes[0].title.set_text("start")
    assert live.png() == first


def test_new_limits_draw_the_background_again_once():
    live, line = _fig(np.sin(V), (-1.5, 1.5))
    a = live.png()
    live.axes[0].set_ylim(-3, 3)
    b = live.png()
    assert live.full_draws == 2 and b != a
    fresh, _ = _fig(np.sin(V), (-3, 3))
    assert fresh.png() == b
    live.axes[0].set_ylim(-1.5, 1.5)
    assert live.png() == a and live.full_draws == 2  # the first background was kept
    with pytest.raises(ValueError, match="backgrounds"):
        LiveFigure(backgrounds=0)


def test_bars_and_memo():
    live = LiveFigure(1, 1)
    bars = Bars(live.axes[0], 3)
    bars.update(["a", "b"], [1.0, 3.0], ["x", "y"])
    assert [b.get_visible() for b in bars.bars] == [True, True, False]
    assert [b.get_height() for b in bars.bars[:2]] == [1.0, 3.0] and bars.notes[1].get_text() == "y"
    assert bars.notes[1].xyann == (1.0, 3.0) and live.axes[0].get_ylim()[1] > 3.0
    assert [t.get_text() for t in live.axes[0].get_xticklabels()] == ["a", "b"]
    with pytest.raises(ValueError, match="labels and values"):
        bars.update(["a"], [1.0, 2.0])
    calls = []
    memo = Memo()
    assert memo(1, lambda: calls.append(1) or "one") == "one" == memo(1, lambda: calls.append(1) or "two")
    assert calls == [1]


def test_nice_ceil():
    from qlab.viz.live_parts1 import nice_ceil

    assert [nice_ceil(v) for v in (1.0, 1.01, 31.5, 0.0042, 8.0, 9.9)] == [1.0, 1.2, 40.0, 0.005, 8.0, 10.0]
    with pytest.raises(ValueError, match="positive"):
        nice_ceil(0.0)


def test_one_thread_restores_the_count():
    import torch

    from qlab.viz.live_parts1 import one_thread

    n = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"), one_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == n
