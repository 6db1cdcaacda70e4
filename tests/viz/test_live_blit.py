"""LiveFigure.animate with bars, alpha and lines (lesson 12's panel): a blitted frame is pixel for pixel
the frame a full redraw gives."""

import io

import numpy as np
import pytest
from PIL import Image

from qlab.viz.live import LiveFigure


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def _figure():
    live = LiveFigure(1, 2, figsize=(6, 2.5))
    ax0, ax1 = live.axes
    ax0.plot(np.sin(np.linspace(0, 6, 50)), color="0.5")
    ax0.set_ylim(-1.2, 1.2)
    bars = ax1.bar(range(4), [1, 2, 3, 4], color="C0")
    ax1.set_ylim(0, 5)
    mark = ax0.axvline(10.0, color="C3", zorder=5)
    ax1.set_title("fixed title")
    live.settle()
    return live, list(bars.patches), mark


def test_blit_matches_a_full_redraw():
    live, bars, mark = _figure()
    live.animate(*bars, mark)
    first = live.png()
    for p, h in zip(bars, [4, 1, 3, 2], strict=True):
        p.set_height(h)
    bars[2].set_alpha(0.2)
    mark.set_xdata([30.0, 30.0])
    moved = live.png()
    assert not np.array_equal(_pixels(first), _pixels(moved))
    ref, _, _ = _figure()  # the same state drawn from scratch, nothing animated
    ref_bars = list(ref.axes[1].patches)
    for p, h in zip(ref_bars, [4, 1, 3, 2], strict=True):
        p.set_height(h)
    ref_bars[2].set_alpha(0.2)
    ref.axes[0].lines[-1].set_xdata([30.0, 30.0])
    np.testing.assert_array_equal(_pixels(moved), _pixels(ref.png()))


def test_animate_refuses_foreign_artists():
    live, bars, _ = _figure()
    other, obars, _ = _figure()
    with pytest.raises(ValueError, match="not an artist of this LiveFigure"):
        live.animate(obars[0])
