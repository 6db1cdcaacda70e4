"""Lesson 13 (capstone) exercise: compute the Pareto front of a size-vs-accuracy sweep."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..viz.pareto import pareto_front
from ._core import Case, Exercise, allclose, exercise


def _reference(size: np.ndarray, metric: np.ndarray, maximize: bool) -> np.ndarray:
    return pareto_front(size, metric, maximize)


def _cases() -> Iterator[Case]:
    # the three measured capstone sweeps (model MB against the lesson's metric)
    from ..analysis.chooser import CAPSTONE, capstone_rows
    from ..analysis.sweep import higher_is_better

    for model in CAPSTONE:
        try:
            rows, metric = capstone_rows(model)
        except FileNotFoundError:
            continue
        pts = [r for r in rows if not r.get("reference")]
        size = np.array([r["mb"] for r in pts], np.float64)
        value = np.array([r[metric] for r in pts], np.float64)
        yield (size, value, higher_is_better(metric)), {}
    # identical points on the front (two formats with the same size and the same score)
    size = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 2.5])
    value = np.array([0.5, 0.5, 0.8, 0.9, 0.9, 0.7])
    yield (size, value, True), {}
    # small integer grids: many exact ties in size, in the metric, and identical points
    rng = np.random.default_rng(0)
    for n in (4, 9, 25):
        size = rng.integers(1, 6, n).astype(np.float64)
        value = rng.integers(1, 6, n).astype(np.float64)
        yield (size, value, False), {}
        yield (size, value, True), {}


exercise(
    Exercise(
        name="pareto_front",
        lesson=13,
        prompt=(
            "Write pareto_front(size, metric, maximize) -> a boolean array, True for every point on the "
            "size-vs-accuracy Pareto front. A point is dominated when another point is at least as small "
            "AND at least as good (larger metric if maximize, else smaller), and strictly better in one of "
            "the two; the front is every point that no other point dominates. Identical points do not "
            "dominate each other."
        ),
        hint=(
            "Compare every pair: j dominates i if size[j] <= size[i] and metric[j] is at least as good, "
            "with at least one of the two strict. Flip the sign of the metric when maximize is True. "
            "Two points with the same size and the same metric are both on the front (if nothing else "
            "beats them). Return one bool per point, not the indices."
        ),
        reference=_reference,
        cases=_cases,
        compare=allclose(),
    )
)
