"""Pick a format from a size-vs-accuracy sweep: a memory budget and an accuracy tolerance in, the
recommended format and its measured cost out (lesson 13, the capstone).

Rows are sweep rows (:func:`qlab.analysis.sweep.sweep` or the committed capstone caches): each has
``format``, ``mb`` (whole model, megabytes), ``bits_per_weight`` and the metric; the float
reference row has ``reference: True``. The *loss* of a row is how much worse than the reference
it is, in percent of the reference (positive = worse, for either direction of the metric)::

    rows, metric = capstone_rows("smollm2-135m")
    c = choose_format(rows, metric, max_loss_pct=5)     # smallest within 5 % of float perplexity
    c = choose_format(rows, metric, budget_mb=100)       # most accurate that fits in 100 MB
    print(c.why)

With a tolerance the chooser minimises size (the budget, if any, is a constraint); with only a
budget it maximises accuracy. When nothing qualifies it raises ``ValueError`` naming the closest
miss, so a learner sees what to relax.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .sweep import higher_is_better

#: the capstone's models, their cache names and the metric each lesson table ranks by
CAPSTONE = {
    "smollm2-135m": ("capstone_smollm2_135m", "perplexity"),
    "minilm-l6": ("capstone_minilm_l6", "top10_overlap"),
    "digits-cnn": ("capstone_digits_cnn", "accuracy"),
}


#: sweeps measured with a capstone model's protocol by another script, whose rows join its Pareto
#: front: lesson 16's importance-matrix table (scripts/imatrix_table.py) for SmolLM2
JOINED = {"smollm2-135m": "imatrix_table"}
#: the imatrix the capstone shows: calibrated on held-out WikiText (lesson 16 also has one from code)
CAPSTONE_IMATRIX = "wiki"


def capstone_rows(model: str, joined: bool = True) -> tuple[list[dict[str, Any]], str]:
    """The committed sweep of a capstone model (``data/cache/capstone_*.json``) and its metric.

    ``joined`` (default): plus the rows of :data:`JOINED` measured the same way (see
    :func:`imatrix_rows`), each marked with its ``source`` script; ``joined=False``: the sweep alone.
    """
    from .. import cache

    if model not in CAPSTONE:
        raise ValueError(f"unknown capstone model {model!r}; choose one of {', '.join(CAPSTONE)}")
    name, metric = CAPSTONE[model]
    payload = cache.load(name)
    rows = list(payload["rows"])
    if joined and model in JOINED:
        rows += imatrix_rows(payload, cache.load(JOINED[model]))
    return rows, metric


def imatrix_rows(capstone: Mapping[str, Any], table: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of lesson 16's importance-matrix table in the capstone's form: every type quantized with
    the WikiText-calibrated imatrix, as ``<type>+imatrix`` -- the IQ lattice types and the k-quants
    with the help the IQ types are made for (llama.cpp refuses iq2_xxs, iq2_xs and iq1_s without
    one). Lesson 16 shows the same types without an imatrix (iq1_m: perplexity 13479), which would
    only stretch the capstone's axis; the capstone sweep has the k-quants without.

    The two caches must come from the same measurement -- model, windows, window length, text and the
    float perplexity -- or their points could not share one plot: ``ValueError`` names what differs.
    Whole-model MB is ``bits_per_weight * n_params / 8e6``, as in the capstone sweep; ``fallbacks``
    counts the tensors stored in another type (``stored``: ``"q4_0 x181, q2_k x30"``).
    """
    cp, tp = capstone["params"], table["params"]
    same = {k: (cp.get(k), tp.get(k)) for k in ("model", "window", "windows", "text")}
    ref = [r for r in capstone["rows"] if r.get("reference")][0]
    tref = [r for r in table["rows"] if r["imatrix"] == "none" and r["type"] == ref["format"]]
    same["float perplexity"] = (ref["perplexity"], tref[0]["perplexity"] if tref else None)
    differ = {k: v for k, v in same.items() if v[0] != v[1]}
    if differ:
        raise ValueError(f"{table.get('name')} was not measured like {capstone.get('name')}: "
                         + ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in differ.items()))  # fmt: skip
    out = []
    for r in table["rows"]:
        if r["type"] == ref["format"] or r["imatrix"] != CAPSTONE_IMATRIX:
            continue
        name = f"{r['type']}+imatrix"
        used = {t: int(n) for t, n in (part.rsplit(" x", 1) for part in r["stored"].split(", "))}
        out.append({"format": name, "bits_per_weight": r["bits_per_weight"],
                    "mb": r["bits_per_weight"] * cp["n_params"] / 8e6,
                    "fallbacks": sum(n for t, n in used.items() if t != r["type"]), "used": used,
                    **{k: r[k] for k in ("perplexity", "nll", "kl", "top1")},
                    "seconds": r.get("seconds"), "reference": False, "source": table.get("script")})  # fmt: skip
    return out


def reference_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The float reference row (``reference: True``)."""
    refs = [r for r in rows if r.get("reference")]
    if len(refs) != 1:
        raise ValueError(f"expected exactly one reference row (reference=True), found {len(refs)}")
    return refs[0]


def loss_pct(value: float, ref: float, maximize: bool) -> float:
    """How much worse ``value`` is than ``ref``, in percent of ``|ref|`` (negative = better)."""
    if ref == 0:
        raise ValueError("the reference metric is 0: a loss relative to it is undefined")
    worse = (ref - value) if maximize else (value - ref)
    return 100.0 * worse / abs(ref)


def with_loss(rows: Sequence[Mapping[str, Any]], metric: str, maximize: bool | None = None) -> list[dict[str, Any]]:
    """Copies of the non-reference rows with ``loss_pct`` of ``metric`` against the reference."""
    maximize = higher_is_better(metric) if maximize is None else maximize
    ref = reference_row(rows)[metric]
    out = []
    for r in rows:
        if r.get("reference"):
            continue
        if metric not in r:
            raise ValueError(f"row {r.get('format')!r} has no {metric!r}; it has {sorted(r)}")
        out.append({**r, "loss_pct": loss_pct(float(r[metric]), float(ref), maximize)})
    return out


@dataclass
class Choice:
    """The recommended row and why: ``row`` (with ``loss_pct``), the constraints, how many rows met them."""

    row: dict[str, Any]
    metric: str
    objective: str  # "size" (smallest within the tolerance) or "accuracy" (best within the budget)
    budget_mb: float | None
    max_loss_pct: float | None
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def format(self) -> str:
        return self.row["format"]

    @property
    def mb(self) -> float:
        return float(self.row["mb"])

    @property
    def value(self) -> float:
        return float(self.row[self.metric])

    @property
    def loss(self) -> float:
        return float(self.row["loss_pct"])

    @property
    def why(self) -> str:
        limits = []
        if self.max_loss_pct is not None:
            limits.append(f"within {self.max_loss_pct:g}% of the float {self.metric}")
        if self.budget_mb is not None:
            limits.append(f"at most {self.budget_mb:g} MB")
        what = "smallest" if self.objective == "size" else "most accurate"
        return (
            f"{self.format}: {self.mb:.4g} MB, {self.row['bits_per_weight']:.3f} bits/weight, "
            f"{self.metric} {self.value:.4g} ({_signed(self.loss)} vs float) -- the {what} of "
            f"{len(self.candidates)} formats {' and '.join(limits)}"
        )

    def __str__(self) -> str:
        return self.why


def _signed(loss: float) -> str:
    return f"{loss:+.2f}% worse" if loss >= 0 else f"{-loss:.2f}% better"


def _finite(r: Mapping[str, Any], metric: str) -> bool:
    return math.isfinite(float(r[metric])) and math.isfinite(float(r["mb"]))


def choose_format(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    budget_mb: float | None = None,
    max_loss_pct: float | None = None,
    maximize: bool | None = None,
) -> Choice:
    """The format to use under a memory budget (``budget_mb``, whole model) and/or an accuracy
    tolerance (``max_loss_pct``, percent worse than the float reference).

    With a tolerance: the smallest row within it (and within the budget, if given); ties go to
    the more accurate, then to the format name. With only a budget: the most accurate row that
    fits; ties go to the smaller. Raises ``ValueError`` when no row qualifies, naming the closest
    miss, and when neither limit is given.
    """
    if budget_mb is None and max_loss_pct is None:
        raise ValueError("give a memory budget (budget_mb) or an accuracy tolerance (max_loss_pct), or both")
    if budget_mb is not None and not budget_mb > 0:
        raise ValueError(f"budget_mb must be positive, got {budget_mb}")
    if max_loss_pct is not None and not max_loss_pct >= 0:
        raise ValueError(f"max_loss_pct must be >= 0, got {max_loss_pct}")
    pts = [r for r in with_loss(rows, metric, maximize) if _finite(r, metric)]
    if not pts:
        raise ValueError("no measured formats in these rows")
    fits = [r for r in pts if budget_mb is None or r["mb"] <= budget_mb]
    good = [r for r in pts if max_loss_pct is None or r["loss_pct"] <= max_loss_pct]
    good_ids = {id(r) for r in good}
    both = [r for r in fits if id(r) in good_ids]

    def smallest(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return min(rs, key=lambda r: (r["mb"], r["loss_pct"], r["format"]))

    def best(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return min(rs, key=lambda r: (r["loss_pct"], r["mb"], r["format"]))

    if not both:
        if not fits:
            s = smallest(pts)
            raise ValueError(f"no format fits in {budget_mb:g} MB: the smallest is {s['format']} at {s['mb']:.4g} MB")
        if not good:
            b = best(pts)
            raise ValueError(
                f"no format is within {max_loss_pct:g}% of the float {metric}: the closest is "
                f"{b['format']} ({_signed(b['loss_pct'])})"
            )
        b, s = best(fits), smallest(good)
        raise ValueError(
            f"no format meets both limits: within {budget_mb:g} MB the most accurate is {b['format']} "
            f"({_signed(b['loss_pct'])}); within {max_loss_pct:g}% the smallest is {s['format']} ({s['mb']:.4g} MB)"
        )
    if max_loss_pct is not None:
        return Choice(smallest(both), metric, "size", budget_mb, max_loss_pct, both)
    return Choice(best(both), metric, "accuracy", budget_mb, max_loss_pct, both)


__all__ = ["CAPSTONE", "Choice", "capstone_rows", "choose_format", "loss_pct", "reference_row", "with_loss"]
