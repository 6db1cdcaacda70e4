"""The capstone panel (lesson 13): size-vs-accuracy Pareto fronts and a format chooser.

A model dropdown, a memory-budget slider (MB, whole model), an accuracy-tolerance slider (percent
worse than float) and what to optimise; the plot marks the Pareto front, the two limits and the
recommended format. The widget only wires controls to :func:`capstone_state` (pure, unit tested)
and :func:`plot_capstone`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..analysis.chooser import CAPSTONE, capstone_rows, choose_format, reference_row, with_loss
from ..analysis.sweep import higher_is_better
from ..core.report import format_table
from .pareto import pareto_front

MODES = ("size", "accuracy")  # smallest within the tolerance / most accurate within the budget


def capstone_state(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    budget_mb: float | None = None,
    max_loss_pct: float | None = None,
    mode: str = "size",
) -> dict[str, Any]:
    """What the panel shows: every format's size, metric and loss against float, the Pareto front
    (MB vs metric), which rows fit the budget and the tolerance, the recommendation and its reason
    (or, when nothing qualifies, ``choice`` None and the chooser's message).

    ``mode="size"``: the smallest format within ``max_loss_pct`` (and ``budget_mb``);
    ``mode="accuracy"``: the most accurate format within ``budget_mb`` (the tolerance is ignored).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    maximize = higher_is_better(metric)
    pts = with_loss(rows, metric, maximize)
    ref = reference_row(rows)
    mb = np.array([r["mb"] for r in pts], np.float64)
    values = np.array([r[metric] for r in pts], np.float64)
    loss = np.array([r["loss_pct"] for r in pts], np.float64)
    tol = max_loss_pct if mode == "size" else None
    try:
        c = choose_format(rows, metric, budget_mb=budget_mb, max_loss_pct=tol, maximize=maximize)
        choice, message = c.format, c.why
    except ValueError as e:
        c, choice, message = None, None, str(e)
    formats = [str(r["format"]) for r in pts]
    return {
        "metric": metric,
        "maximize": maximize,
        "formats": formats,
        "mb": mb,
        "bits_per_weight": np.array([r["bits_per_weight"] for r in pts], np.float64),
        "values": values,
        "loss_pct": loss,
        "front": pareto_front(mb, values, maximize),
        "fits": mb <= budget_mb if budget_mb is not None else np.ones(len(pts), bool),
        "within": loss <= tol if tol is not None else np.ones(len(pts), bool),
        "reference_value": float(ref[metric]),
        "reference_mb": float(ref["mb"]),
        "budget_mb": budget_mb,
        "max_loss_pct": tol,
        "mode": mode,
        "choice": choice,
        "choice_index": formats.index(choice) if choice is not None else None,
        "choice_mb": c.mb if c else None,
        "choice_value": c.value if c else None,
        "choice_loss_pct": c.loss if c else None,
        "message": message,
    }


def tolerance_value(reference: float, max_loss_pct: float, maximize: bool) -> float:
    """The metric value exactly ``max_loss_pct`` percent worse than ``reference``."""
    step = abs(reference) * max_loss_pct / 100.0
    return reference - step if maximize else reference + step


def readout(s: Mapping[str, Any]) -> str:
    """One or two lines of text for a :func:`capstone_state`."""
    if s["choice"] is None:
        return f"nothing fits: {s['message']}"
    fp32 = s["reference_mb"] / s["choice_mb"]
    return f"recommended {s['message']}; {fp32:.2f}x smaller than fp32"


def _ticks_125(values: Any) -> list[float]:
    """Round ticks (1-2-5 x 10^k, finer steps when the values span less than a decade) with at least
    three inside the range of ``values`` (positive) where the finest set allows it."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return []
    lo, hi = float(v.min()), float(v.max())
    ks = range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8)):
        ticks = sorted(m * 10.0**k for k in ks for m in mantissas)
        if sum(lo <= t <= hi for t in ticks) >= 3:
            break
    # plus the neighbours just outside the data: drawn when the axis margins reach them
    return [t for i, t in enumerate(ticks) if lo <= t <= hi
            or (i + 1 < len(ticks) and ticks[i + 1] >= lo and t < lo) or (i > 0 and ticks[i - 1] <= hi and t > hi)]


def capstone_table(rows: Sequence[Mapping[str, Any]], metric: str, front_only: bool = False) -> str:
    """A capstone sweep as text, sorted by size: bits/weight, MB, the metric, its loss against the
    float row (%), the secondary metrics the rows carry, fallbacks, and ``*`` on the Pareto front."""
    s = capstone_state(rows, metric)
    extra = [k for k in ("kl", "top1", "cosine_mean") if k in rows[1]]
    byname = {r["format"]: r for r in rows}
    out = []
    for i in np.argsort(s["mb"], kind="stable"):
        if front_only and not s["front"][i]:
            continue
        r = byname[s["formats"][i]]
        out.append({**r, "loss_pct": s["loss_pct"][i], "front": "*" if s["front"][i] else ""})
    cols = [("format", "format", None), ("bits_per_weight", "bits/w", ".3f"), ("mb", "MB", ".4f"),
            (metric, metric, ".4f"), ("loss_pct", "loss %", ".2f"), *((k, k, ".4f") for k in extra),
            ("fallbacks", "fallbacks", "d"), ("front", "front", None)]
    text = format_table(out, cols)
    if front_only:
        text += f"\n({int((~s['front']).sum())} dominated formats not shown)"
    return text


class CapstonePlot:
    """MB (log scale) against the metric on ``ax``: dominated formats grey, the Pareto front red and
    labelled, the float reference dotted -- drawn once per sweep -- and the parts that follow the
    controls, moved in place by :meth:`update`: the budget and tolerance as dashed lines, the formats
    within both limits circled, the recommendation as a star (labelled if the front's labels skip it)."""

    def __init__(self, ax: Any, s: Mapping[str, Any], title: str | None = None, label_front: bool = True,
                 animated: bool = False):  # fmt: skip
        """``animated``: mark the moving parts for a :class:`~qlab.viz.live.LiveFigure` (blitted on
        its saved background; a plain draw leaves animated artists out)."""
        self.ax, self.s, self.animated = ax, s, animated
        mb, v, front = s["mb"], s["values"], s["front"]
        self.dominated = ax.scatter(mb[~front], v[~front], s=14, color="0.65", zorder=2, label="dominated")
        order = np.argsort(mb[front], kind="stable")
        (self.front,) = ax.plot(mb[front][order], v[front][order], "o-", ms=4, color="C3", zorder=3, label="Pareto front")
        self.within = ax.scatter([], [], s=40, facecolors="none", edgecolors="C0", zorder=4, label="within limits")
        self.labelled = self._label_front() if label_front else set()
        self.float = ax.axhline(s["reference_value"], color="0.3", ls=":", lw=1, label="float")
        self.tolerance = ax.axhline(s["reference_value"], color="C2", ls="--", lw=1)
        self.budget = ax.axvline(float(mb.max()), color="C0", ls="--", lw=1)
        self.star = ax.scatter([], [], marker="*", s=220, color="gold", edgecolors="k", zorder=5)
        self.star_label = ax.annotate("", (mb[0], v[0]), textcoords="offset points", xytext=(3, 3), fontsize=7, color="C3",
                                      zorder=6, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})  # fmt: skip
        self._axes(title)
        for a in (self.within, self.tolerance, self.budget, self.star, self.star_label):
            a.set_animated(animated)
        self.update(s)

    def _label_front(self) -> set[int]:
        """Front points, thinned so that no two labels overlap (distance in axes fractions)."""
        s, ax = self.s, self.ax
        mb, v = s["mb"], s["values"]
        idx = np.flatnonzero(s["front"])
        idx = idx[np.argsort(mb[idx], kind="stable")]
        lx = np.log10(mb)
        fx = (lx - lx.min()) / max(float(np.ptp(lx)), 1e-9)
        fin = np.isfinite(v)
        vv = np.log10(np.where(fin & (v > 0), v, 1)) if not s["maximize"] and (v[fin] > 0).all() else v
        fy = (vv - np.nanmin(vv[fin])) / max(float(np.ptp(vv[fin])), 1e-9)
        placed: list[int] = []
        for i in idx:
            if all(fx[i] - fx[j] >= 0.12 or abs(fy[i] - fy[j]) >= 0.1 for j in placed):
                ax.annotate(s["formats"][i], (mb[i], v[i]), textcoords="offset points", xytext=(3, 3), fontsize=7,
                            color="C3", zorder=6, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})  # fmt: skip
                placed.append(int(i))
        return set(placed)

    def _axes(self, title: str | None) -> None:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

        s, ax = self.s, self.ax
        mb, v = s["mb"], s["values"]
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(_ticks_125(mb)))  # round ticks, several even within one decade
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        pos = v[np.isfinite(v)]
        if not s["maximize"] and len(pos) and pos.min() > 0 and pos.max() / pos.min() > 5:
            ax.set_yscale("log")  # e.g. perplexities from 37 to 386: a linear axis shows only the worst point
            ax.yaxis.set_major_locator(FixedLocator(_ticks_125(pos)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("model size (MB, log scale)")
        ax.set_ylabel(f"{s['metric']} ({'higher' if s['maximize'] else 'lower'} is better)")
        if title:
            ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        # the limits of the static picture: the moving lines must not rescale it
        ax.relim()
        ax.autoscale_view()
        ax.set_autoscale_on(False)

    def update(self, s: Mapping[str, Any]) -> None:
        """Show the limits and the recommendation of ``s`` (a :func:`capstone_state` of the same sweep)."""
        if list(s["formats"]) != list(self.s["formats"]):
            raise ValueError("update() needs a state of the sweep this plot was drawn for (its formats differ)")
        mb, v = s["mb"], s["values"]
        limits = s["budget_mb"] is not None or s["max_loss_pct"] is not None
        ok = s["fits"] & s["within"] if limits else np.zeros(len(mb), bool)
        self.within.set_offsets(np.column_stack([mb[ok], v[ok]]) if ok.any() else np.empty((0, 2)))
        handles = [self.dominated, self.front] + ([self.within] if limits else []) + [self.float]
        self.tolerance.set_visible(s["max_loss_pct"] is not None)
        if s["max_loss_pct"] is not None:
            y = tolerance_value(s["reference_value"], s["max_loss_pct"], s["maximize"])
            self.tolerance.set_ydata([y, y])
            self.tolerance.set_label(f"tolerance {s['max_loss_pct']:g}%")
            handles.append(self.tolerance)
        self.budget.set_visible(s["budget_mb"] is not None)
        if s["budget_mb"] is not None:
            self.budget.set_xdata([s["budget_mb"], s["budget_mb"]])
            self.budget.set_label(f"budget {s['budget_mb']:.3g} MB")
            handles.append(self.budget)
        i = s["choice_index"]
        self.star.set_visible(i is not None)
        self.star_label.set_visible(i is not None and i not in self.labelled)
        if i is not None:
            self.star.set_offsets([[mb[i], v[i]]])
            self.star.set_label(f"chosen: {s['choice']}")
            self.star_label.xy = (mb[i], v[i])
            self.star_label.set_text(s["formats"][i])
            handles.append(self.star)
        self.ax.legend(handles=handles, fontsize=7).set_animated(self.animated)
        self.s = s


def plot_capstone(s: Mapping[str, Any], ax: Any = None, title: str | None = None, label_front: bool = True) -> Any:
    """MB (log scale) against the metric: dominated formats grey, the Pareto front red, the budget
    and tolerance as dashed lines, the float reference dotted, the recommendation as a star
    (a :class:`CapstonePlot`; returns ``ax``)."""
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(7, 3.5), layout="constrained").subplots()
    CapstonePlot(ax, s, title, label_front)
    return ax


def budget_range(rows: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """Slider range in MB: a little below the smallest format, up to the float model."""
    mbs = [float(r["mb"]) for r in rows]
    return 0.8 * min(mbs), max(mbs)


def capstone_panel(models: Sequence[str] | None = None, max_loss_pct: float = 1.0):  # pragma: no cover - widgets
    """An ipywidgets panel over the committed capstone sweeps (see :func:`capstone_state`): one
    :class:`~qlab.viz.live.LiveFigure` per model, drawn once; the controls move its limits in place."""
    import ipywidgets as w

    from .live import LiveFigure

    models = list(models or CAPSTONE)
    data = {m: capstone_rows(m) for m in models}
    model = w.Dropdown(options=models, value=models[0], description="model")
    mode = w.ToggleButtons(options=[("smallest within tolerance", "size"), ("most accurate within budget", "accuracy")],
                           value="size", description="optimise")  # fmt: skip
    budget = w.FloatLogSlider(description="budget MB", base=10, readout_format=".3g", continuous_update=False,
                              layout=w.Layout(width="460px"))  # fmt: skip
    tol = w.FloatSlider(value=max_loss_pct, min=0.0, max=20.0, step=0.1, description="tolerance %",
                        readout_format=".1f", continuous_update=False, layout=w.Layout(width="460px"))  # fmt: skip
    text = w.HTML()
    plots: dict[str, tuple[LiveFigure, CapstonePlot]] = {}
    image = w.Image(format="png")

    def state():
        rows, metric = data[model.value]
        return capstone_state(rows, metric, budget.value, tol.value, mode.value)

    def set_range():
        lo, hi = budget_range(data[model.value][0])
        budget.unobserve(redraw, "value")
        budget.min, budget.max = -20, 20  # widen first so the new value is never clipped
        budget.value = hi
        budget.min, budget.max = float(np.log10(lo)), float(np.log10(hi))
        budget.step = (budget.max - budget.min) / 200
        budget.observe(redraw, "value")

    def redraw(*_):
        s = state()
        tol.disabled = mode.value == "accuracy"
        text.value = f"<b>{readout(s)}</b>"
        if model.value not in plots:  # first visit of a model: draw its sweep once
            live = LiveFigure(figsize=(8, 3.6))
            plots[model.value] = live, CapstonePlot(live.axes[0], s, title=f"{model.value}: size vs {s['metric']}",
                                                           animated=True)
            live.settle()
        live, plot = plots[model.value]
        plot.update(s)
        image.value = live.png()

    def on_model(*_):
        set_range()
        redraw()

    for c in (budget, tol, mode):
        c.observe(redraw, "value")
    for m in reversed(models):  # every model's static picture now, so the first switch is as quick as the rest
        model.value = m
        on_model()
    model.observe(on_model, "value")
    return w.VBox([w.HBox([model, mode]), budget, tol, text, image])


__all__ = ["CapstonePlot", "capstone_state", "capstone_table", "capstone_panel", "plot_capstone", "readout", "tolerance_value", "budget_range", "MODES"]
