"""Pareto front on hand-made sets and against the definition; the plot renders to a file."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlab.viz.pareto import pareto_front, plot_pareto
from tests.quantize._fixtures import single_thread  # noqa: F401  (fixture)


def test_hand_made_front():
    #        a    b    c    d    e    f    g
    x = [4.5, 4.5, 5.0, 6.0, 8.5, 8.5, 16.0]
    y = [0.4, 0.5, 0.3, 0.3, 0.01, 0.01, 0.0]
    # b is dominated by a (same size, worse); d by c (bigger, equal); e and f tie (both kept)
    assert pareto_front(x, y).tolist() == [True, False, True, False, True, True, True]
    # maximising y (accuracy-like): a larger y is better
    acc = [0.90, 0.95, 0.93, 0.97, 0.97, 0.96, 0.97]
    assert pareto_front(x, acc, maximize_y=True).tolist() == [False, True, False, True, False, False, False]
    assert pareto_front([1.0, np.nan, 2.0], [1.0, 0.0, np.nan]).tolist() == [True, False, False]
    assert pareto_front([], []).tolist() == []
    with pytest.raises(ValueError):
        pareto_front([1, 2], [1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=12), st.booleans())
def test_front_matches_the_definition(points, maximize):
    x = [float(a) for a, _ in points]
    y = [float(b) for _, b in points]
    got = pareto_front(x, y, maximize)
    s = -1.0 if maximize else 1.0
    for i in range(len(points)):
        dominated = any(
            x[j] <= x[i] and s * y[j] <= s * y[i] and (x[j] < x[i] or s * y[j] < s * y[i]) for j in range(len(points))
        )
        assert got[i] == (not dominated)


def test_plot_writes_png(tmp_path):
    rows = [
        {"format": "f32 (reference)", "bits_per_weight": 32.0, "perplexity": 10.0, "reference": True},
        {"format": "q8_0", "bits_per_weight": 8.5, "perplexity": 10.01},
        {"format": "q4_0", "bits_per_weight": 4.5, "perplexity": 12.0},
        {"format": "nf4", "bits_per_weight": 4.5, "perplexity": 11.5},
    ]
    ax = plot_pareto(rows, y="perplexity", path=tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ax.get_ylabel().startswith("perplexity (lower")
    with pytest.raises(ValueError, match="metric"):
        plot_pareto(rows)
