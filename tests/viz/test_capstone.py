"""The capstone panel's state: Pareto front, limits and recommendation checked against brute-force
numpy over hand-made tables and the committed caches; the plot and the widget wiring smoke-tested."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qlab.analysis.chooser import CAPSTONE, capstone_rows  # noqa: E402
from qlab.viz.capstone import budget_range, capstone_state, plot_capstone, readout, tolerance_value  # noqa: E402

ROWS = [  # accuracy, float 0.80 at 10 MB
    {"format": "f32", "reference": True, "mb": 10.0, "bits_per_weight": 32.0, "accuracy": 0.80},
    {"format": "w2", "mb": 1.0, "bits_per_weight": 2.0, "accuracy": 0.40},
    {"format": "w3", "mb": 1.5, "bits_per_weight": 3.0, "accuracy": 0.70},
    {"format": "w3b", "mb": 1.5, "bits_per_weight": 3.0, "accuracy": 0.60},  # dominated by w3
    {"format": "w4", "mb": 2.0, "bits_per_weight": 4.0, "accuracy": 0.79},
    {"format": "w4b", "mb": 2.5, "bits_per_weight": 5.0, "accuracy": 0.79},  # dominated by w4
    {"format": "w8", "mb": 3.0, "bits_per_weight": 8.0, "accuracy": 0.80},
]


def brute_front(x, y, maximize):
    y = -np.asarray(y) if maximize else np.asarray(y)
    out = []
    for i in range(len(x)):
        out.append(not any(x[j] <= x[i] and y[j] <= y[i] and (x[j] < x[i] or y[j] < y[i]) for j in range(len(x))))
    return np.array(out)


def test_state_by_hand():
    s = capstone_state(ROWS, "accuracy", budget_mb=2.2, max_loss_pct=5.0)
    assert s["formats"] == ["w2", "w3", "w3b", "w4", "w4b", "w8"]
    assert s["front"].tolist() == [True, True, False, True, False, True]
    assert s["fits"].tolist() == [True, True, True, True, False, False]
    np.testing.assert_allclose(s["loss_pct"], 100 * (0.80 - np.array([0.4, 0.7, 0.6, 0.79, 0.79, 0.8])) / 0.8)
    assert s["within"].tolist() == [False, False, False, True, True, True]
    assert (s["choice"], s["choice_mb"], s["choice_index"]) == ("w4", 2.0, 3)
    assert s["choice_loss_pct"] == pytest.approx(1.25)
    assert s["maximize"] and s["reference_value"] == 0.80 and s["reference_mb"] == 10.0
    assert readout(s).startswith("recommended w4: 2 MB") and "5.00x smaller than fp32" in readout(s)


def test_modes_and_nothing_fits():
    s = capstone_state(ROWS, "accuracy", budget_mb=1.6, max_loss_pct=5.0, mode="accuracy")
    assert s["choice"] == "w3" and s["max_loss_pct"] is None and s["within"].all()  # tolerance ignored
    s = capstone_state(ROWS, "accuracy", budget_mb=1.6, max_loss_pct=5.0, mode="size")
    assert s["choice"] is None and s["choice_index"] is None
    assert "both limits" in s["message"] and readout(s).startswith("nothing fits:")
    s = capstone_state(ROWS, "accuracy", budget_mb=0.5, mode="accuracy")
    assert s["choice"] is None and "smallest is w2 at 1 MB" in s["message"]
    with pytest.raises(ValueError, match="mode"):
        capstone_state(ROWS, "accuracy", 1.0, 1.0, mode="speed")


def test_tolerance_value():
    assert tolerance_value(0.8, 10, maximize=True) == pytest.approx(0.72)
    assert tolerance_value(10.0, 5, maximize=False) == pytest.approx(10.5)
    assert tolerance_value(-2.0, 50, maximize=True) == pytest.approx(-3.0)


def test_plot_marks_the_choice():
    s = capstone_state(ROWS, "accuracy", budget_mb=2.2, max_loss_pct=5.0)
    ax = plot_capstone(s, title="t")
    assert ax.get_xscale() == "log" and ax.get_title() == "t"
    stars = [c for c in ax.collections if c.get_label().startswith("chosen")]
    assert len(stars) == 1 and stars[0].get_offsets().tolist() == [[2.0, 0.79]]
    labels = sorted(t.get_text() for t in ax.texts if t.get_visible())
    assert labels == ["w2", "w3", "w4", "w8"]  # front only
    assert {ln.get_label() for ln in ax.lines} >= {"Pareto front", "float", "tolerance 5%", "budget 2.2 MB"}
    s = capstone_state(ROWS, "accuracy", budget_mb=0.5, mode="accuracy")
    assert not [c for c in plot_capstone(s).collections if c.get_label().startswith("chosen")]


def test_budget_range():
    assert budget_range(ROWS) == (pytest.approx(0.8), 10.0)


@pytest.mark.parametrize("model", list(CAPSTONE))
def test_state_on_the_caches(model):
    rows, metric = capstone_rows(model)
    pts = [r for r in rows if not r["reference"]]
    mb = np.array([r["mb"] for r in pts])
    v = np.array([r[metric] for r in pts])
    maximize = metric != "perplexity"
    for tol in (0.5, 2.0, 10.0):
        s = capstone_state(rows, metric, budget_mb=None, max_loss_pct=tol)
        assert s["front"].tolist() == brute_front(mb, v, maximize).tolist()
        if s["choice"] is not None:
            i = s["choice_index"]
            assert s["front"][i] and s["within"][i]
            assert mb[i] == mb[s["within"]].min()  # nothing within the tolerance is smaller


def test_panel_wiring():
    from qlab.viz.capstone import capstone_panel

    panel = capstone_panel(["digits-cnn"], max_loss_pct=1.0)
    (_model, mode), budget, tol, text, image = panel.children[0].children, *panel.children[1:]
    lo, hi = budget_range(capstone_rows("digits-cnn")[0])
    assert budget.value == pytest.approx(hi) and 10**budget.min == pytest.approx(lo)
    before, picture = text.value, image.value
    assert before.startswith("<b>recommended ") and picture[:4] == b"\x89PNG"
    tol.value = 20.0
    assert text.value != before and image.value != picture
    mode.value = "accuracy"
    assert tol.disabled and "most accurate" in text.value


def test_smollm2_plot_is_readable():
    """Perplexities from 37 to 386 go on a log axis; several size ticks within one decade."""
    rows, metric = capstone_rows("smollm2-135m")
    ax = plot_capstone(capstone_state(rows, metric))
    assert ax.get_yscale() == "log"
    for ticks, (lo, hi) in ((ax.get_xticks(), ax.get_xlim()), (ax.get_yticks(), ax.get_ylim())):
        assert len([t for t in ticks if lo <= t <= hi]) >= 3


@pytest.mark.parametrize("model", ["smollm2-135m", "minilm-l6", "digits-cnn"])
def test_front_labels_do_not_overlap(model: str) -> None:
    """Lesson 13's panels: the Pareto-front labels, drawn at the lesson's figure size, never overlap
    each other and sit above the markers and lines (on a white box) so no point hides one."""
    import matplotlib.pyplot as plt

    rows, metric = capstone_rows(model)
    fig, ax = plt.subplots(figsize=(5, 3.8))
    plot_capstone(capstone_state(rows, metric), ax=ax)
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    assert len(boxes) >= 3
    overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    plt.close(fig)
    assert not overlapping
    top = max(a.get_zorder() for a in [*ax.lines, *ax.collections])
    assert all(t.get_zorder() > top and t.get_bbox_patch() is not None for t in ax.texts)


def test_capstone_table() -> None:
    from qlab.viz.capstone import capstone_table

    rows, metric = capstone_rows("digits-cnn")
    lines = capstone_table(rows, metric).splitlines()
    assert len(lines) == len(capstone_state(rows, metric)["formats"]) + 2 and lines[0].split()[:3] == ["format", "bits/w", "MB"]
    mbs = [float(line.split()[2]) for line in lines[2:]]
    assert mbs == sorted(mbs)
    front = capstone_table(rows, metric, front_only=True).splitlines()
    s = capstone_state(rows, metric)
    assert len(front) == int(s["front"].sum()) + 3 and front[-1].startswith(f"({int((~s['front']).sum())} dominated")
    assert all(line.rstrip().endswith("*") for line in front[2:-1])


def test_update_moves_the_limits_in_place():
    """The panel's figure is drawn once; update() moves the budget and tolerance lines, the circled
    formats and the star -- the same picture as a figure drawn afresh for the new limits."""
    from matplotlib.figure import Figure

    from qlab.viz.capstone import CapstonePlot

    rows, metric = capstone_rows("smollm2-135m")
    first = capstone_state(rows, metric, budget_mb=500, max_loss_pct=1.0)
    moved = capstone_state(rows, metric, budget_mb=100, max_loss_pct=10.0)
    plot = CapstonePlot(Figure().subplots(), first)
    lim = plot.ax.get_xlim(), plot.ax.get_ylim()
    plot.update(moved)
    fresh = CapstonePlot(Figure().subplots(), moved)
    assert (plot.ax.get_xlim(), plot.ax.get_ylim()) == lim
    assert list(plot.budget.get_xdata()) == [100, 100] and plot.budget.get_label() == "budget 100 MB"
    assert plot.star.get_offsets().tolist() == fresh.star.get_offsets().tolist()
    assert plot.within.get_offsets().tolist() == fresh.within.get_offsets().tolist()
    assert moved["choice"] == "q4_k+imatrix" and first["choice"] != moved["choice"] and plot.star.get_visible()
    legend = [t.get_text() for t in plot.ax.get_legend().get_texts()]
    assert legend == [t.get_text() for t in fresh.ax.get_legend().get_texts()] and f"chosen: {moved['choice']}" in legend
    nothing = capstone_state(rows, metric, budget_mb=60, max_loss_pct=1.0)
    plot.update(nothing)
    assert nothing["choice"] is None and not plot.star.get_visible() and not plot.star_label.get_visible()
    with pytest.raises(ValueError, match="formats differ"):
        plot.update(capstone_state(*capstone_rows("digits-cnn")))
