"""qlab.viz.live: figures redrawn in place. The PNG is decoded back (PIL) and compared with what was
drawn; the in-place histogram's bars are compared with numpy's histogram."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from qlab.viz.live import DPI, Histogram, LiveFigure, hist_counts, set_vlines


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_png_has_the_figure_size_and_changes_with_the_data():
    live = LiveFigure(1, 2, figsize=(5, 2))
    (line,) = live.axes[0].plot([0, 1], [0, 1], color="red")
    live.settle()
    a = live.png()
    assert a[:8] == b"\x89PNG\r\n\x1a\n"
    assert _pixels(a).shape == (2 * DPI, 5 * DPI, 3)
    line.set_data([0, 1], [1, 0])
    b = live.png()
    assert a != b
    # a pure function of the figure: the same figure gives the same bytes
    assert live.png() == b
    red = (_pixels(b)[..., 0] > 200) & (_pixels(b)[..., 1] < 80)
    assert red.any() and not red[:, 5 * DPI // 2 :].any()  # the red line is in the left axes only


def test_histogram_matches_numpy_and_moves_in_place():
    live = LiveFigure()
    h = Histogram(live.axes[0], bins=20, log=False)
    x = np.random.default_rng(0).standard_normal(1000)
    h.update(x, -3, 3)
    counts, edges = np.histogram(x, bins=20, range=(-3, 3))
    got, got_edges = h.patch.get_data()[:2]
    assert np.array_equal(got, counts) and np.allclose(got_edges, edges)
    assert live.axes[0].get_xlim() == (-3, 3)
    patch = h.patch
    h.update(x * 0.1, -0.5, 0.5)
    assert h.patch is patch  # the same artist, new data
    assert h.patch.get_data()[0].sum() == np.sum(np.abs(x * 0.1) <= 0.5)


def test_log_histogram_keeps_empty_bins_drawable():
    live = LiveFigure()
    h = Histogram(live.axes[0], bins=4, log=True)
    h.update(np.array([0.1, 0.2]), 0.0, 4.0)
    assert live.axes[0].get_yscale() == "log"
    assert h.patch.get_data()[0].min() == 0.5  # empty bins sit below the axis floor (0.8), not at log(0)
    live.png()


def test_hist_counts_widens_a_degenerate_range():
    counts, edges = hist_counts(np.zeros(5), 3, 0.0, 0.0)
    assert counts.sum() == 5 and edges[0] == -0.5 and edges[-1] == 0.5


def test_vlines_move():
    live = LiveFigure()
    ax = live.axes[0]
    lines = ax.vlines([], 0, 1, transform=ax.get_xaxis_transform())
    set_vlines(lines, [0.25, 0.5])
    assert [s[0][0] for s in lines.get_segments()] == [0.25, 0.5]


@pytest.mark.parametrize("bad", [dict(nrows=0), dict(ncols=1.5), dict(figsize=(0, 2)), dict(figsize=(float("nan"), 2))])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError, match="nrows|figsize"):
        LiveFigure(**bad)
    with pytest.raises(ValueError, match="bins"):
        Histogram(LiveFigure().axes[0], bins=0)


def test_blitted_frame_equals_a_full_draw():
    """An animated line drawn on the saved background gives the pixels of a figure drawn in full;
    a change of limits redraws the background (the ticks move)."""

    def figure(animated: bool):
        live = LiveFigure(figsize=(4, 2))
        ax = live.axes[0]
        ax.plot([0, 10], [0, 1], color="0.5")  # static
        (line,) = ax.plot([0, 10], [1, 0], color="red", zorder=5)
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 1)
        if animated:
            live.animate(line)
        live.settle()
        return live, line

    live, line = figure(animated=True)
    first = live.png()
    line.set_data([0, 10], [0.5, 0.5])
    moved = live.png()
    ref, ref_line = figure(animated=False)
    ref_line.set_data([0, 10], [0.5, 0.5])
    assert moved != first and np.array_equal(_pixels(moved), _pixels(ref.png()))
    live.axes[0].set_xlim(0, 20)
    ref.axes[0].set_xlim(0, 20)
    assert np.array_equal(_pixels(live.png()), _pixels(ref.png()))
