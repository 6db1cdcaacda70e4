"""Sensitivity-driven mixed precision: one format per layer under a byte budget.

Quantizing every layer with the same format wastes bits: some layers hardly change the model's
output at 3 bits, others (``attn_v``, ``ffn_down``, the first blocks) hurt at 4. Given a byte
budget, :func:`mixed_precision` chooses a format per group of weights so that the model fits and
the predicted damage is smallest:

1. **Sensitivity** (:func:`qlab.quantize.sensitivity.layer_sensitivity`): for every candidate format ``f``
   and group ``g``, quantize ``g`` alone with ``f`` and measure ``Δ[g, f]`` -- the KL divergence
   to the float model for causal LMs (on :func:`qlab.eval.calibration_text`, never on the text
   the result is evaluated on), else ``|Δ metric|``.
2. **Bytes** ``B[g, f]``: exactly what :func:`qlab.quantize.quantize_model` would report for
   that group, *after* llama.cpp's row-length fallback (on SmolLM2 a ``q3_k`` request on a
   576-wide row is stored as ``q4_0``; its bytes and its measured Δ are those of ``q4_0``).
3. **Allocation** -- a multiple-choice knapsack, minimise ``Σ_g Δ[g, f_g]`` subject to
   ``Σ_g B[g, f_g] + 4 * other_params <= budget``, assuming the damages add up (first-order:
   the errors of different layers are small and roughly independent; HAWQ-V3, Yao et al. 2021,
   and llama.cpp's own mixes make the same assumption). Solved with the classic greedy on the
   lower convex hull of each group's (bytes, Δ) points: start every group at its cheapest
   option, then repeatedly take the upgrade step with the largest Δ decrease per extra byte that
   still fits (the Lagrangian relaxation's order; exact at the hull vertices it reaches). A final
   pass spends leftover bytes on any single upgrade that fits and helps. With few groups (up to
   :data:`EXACT_LIMIT` combinations, e.g. ``by="type"``) every combination is enumerated instead. Each uniform candidate
   that fits is also scored and kept if its predicted Δ is lower, so the result is never
   predicted worse than a uniform format of at most the same size.

The recipe returned is a plain ``{module name: format}`` mapping for ``quantize_model``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from .. import formats
from ..core.model import Loaded
from .recipes import Spec, fallback, spec, targets, torch_module

DEFAULT_CANDIDATES = ("q8_0", "q6_k", "q4_k", "q3_k", "q2_k")


@lru_cache(maxsize=512)
def _rows_bytes(label: str, name: str, options: tuple, row: int) -> tuple[int, int, int]:
    """Bytes of 1, 2 and 3 rows of ``row`` zeros (encoded), to extrapolate to any row count."""
    fmt = formats.get(name)
    return tuple(int(fmt.encode(np.zeros((k, row), np.float32), **dict(options)).nbytes) for k in (1, 2, 3))


def tensor_bytes(s: Spec, shape: Sequence[int]) -> int:
    """Exact ``Encoded.nbytes`` of a weight of ``shape`` stored as ``s`` (``f32`` = 4 bytes/value).

    Storage is affine in the number of rows for every qlab format (per-block, per-row and
    per-tensor parts); it is measured on 1, 2 and 3 rows of zeros and extrapolated, falling back to
    a full encode if the three points are not on a line.
    """
    rows, row = int(shape[0]), int(np.prod(shape[1:]))
    if s == "f32":
        return 4 * rows * row
    b1, b2, b3 = _rows_bytes(s.label(), str(s), tuple(sorted(s.options.items())), row)
    if b3 - b2 != b2 - b1:
        return int(formats.get(s).encode(np.zeros((rows, row), np.float32), **s.options).nbytes)
    return b1 + (rows - 1) * (b2 - b1)


@dataclass
class GroupCosts:
    """Per group: the tensors, and per candidate the format used, its bytes and its damage."""

    names: list[str]
    used: list[str]
    nbytes: list[int]
    delta: list[float]


@dataclass
class MixedResult:
    """What :func:`mixed_precision` chose (``recipe`` is what ``quantize_model`` takes)."""

    recipe: dict[str, Spec]
    choice: dict[str, str]  # group -> candidate label
    total_bytes: int
    budget_bytes: int
    predicted_delta: float
    candidates: list[str]
    costs: dict[str, GroupCosts] = field(repr=False, default_factory=dict)
    sensitivity: dict[str, Any] = field(repr=False, default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Groups per chosen candidate."""
        out = {c: 0 for c in self.candidates}
        for c in self.choice.values():
            out[c] += 1
        return {k: v for k, v in out.items() if v}


def _other_params(m: Loaded) -> int:
    mod = torch_module(m)
    covered = {id(t.weight) for t in targets(mod)}
    return sum(p.numel() for p in mod.parameters() if id(p) not in covered)


def uniform_bytes(m: Loaded, recipe: Any) -> int:
    """``quantize_model(m, recipe).total_bytes`` for a single format, computed without encoding
    the weights (fallbacks included; other parameters as float32)."""
    s = spec(recipe)
    total = 4 * _other_params(m)
    for t in targets(m):
        used, _ = fallback(s, t.row_length)
        total += tensor_bytes(used, t.shape)
    return total


def uniform_within(m: Loaded, budget_bytes: int, candidates: Iterable[Any] = DEFAULT_CANDIDATES) -> str | None:
    """The candidate whose uniform model is the largest that still fits ``budget_bytes`` (the
    fair uniform baseline for a mixed recipe of that budget), or None if none fits."""
    sizes = {spec(c).label(): uniform_bytes(m, c) for c in candidates}
    fit = {k: v for k, v in sizes.items() if v <= budget_bytes}
    return max(fit, key=fit.__getitem__) if fit else None


def _group_costs(m: Loaded, groups: Mapping[str, list[str]], cands: list[Spec], sens: Mapping[str, Any]) -> dict[str, GroupCosts]:
    tg = {t.name: t for t in targets(m)}
    out: dict[str, GroupCosts] = {}
    for g, names in groups.items():
        used, nbytes, delta = [], [], []
        for c in cands:
            res = sens[c.label()]
            row = next((r for r in res.rows if r["group"] == g), None)
            if row is None:
                raise ValueError(f"sensitivity for {c.label()} has no row for group {g!r}")
            fb = [fallback(c, tg[n].row_length)[0] for n in names]
            used.append("+".join(sorted({f.label() for f in fb})))  # what is stored, e.g. "q4_0"
            nbytes.append(sum(tensor_bytes(f, tg[n].shape) for f, n in zip(fb, names, strict=True)))
            delta.append(float(abs(row["kl"] if "kl" in row else row["delta"])))
        out[g] = GroupCosts(list(names), used, nbytes, delta)
    return out


def _measure(m: Loaded, groups: Mapping[str, list[str]], cands: list[Spec], kw: dict[str, Any]) -> dict[str, Any]:
    """Sensitivity per candidate, measuring each (group, stored formats) pair once: on SmolLM2 a
    ``q3_k`` and a ``q2_k`` request on a 576-wide row are both stored as ``q4_0``."""
    from .sensitivity import SensitivityResult, layer_sensitivity

    tg = {t.name: t for t in targets(m)}
    seen: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    out: dict[str, Any] = {}
    for c in cands:
        key = {g: tuple(fallback(c, tg[n].row_length)[0].label() for n in names) for g, names in groups.items()}
        need = {g: names for g, names in groups.items() if (g, key[g]) not in seen}
        ref: dict[str, float] = {}
        if need:
            res = layer_sensitivity(m, c, by=need, **kw)
            ref = res.reference
            seen.update({(r["group"], key[r["group"]]): r for r in res.rows})
        out[c.label()] = SensitivityResult([seen[g, key[g]] for g in groups], c.label(), ref)
    return out


def _hull(nb: list[int], dl: list[float]) -> list[int]:
    """Indices of the lower convex hull of the points (bytes, Δ), cheapest first, Δ decreasing."""
    order = sorted(range(len(nb)), key=lambda i: (nb[i], dl[i]))
    pts: list[int] = []
    for i in order:
        if pts and dl[i] >= dl[pts[-1]]:
            continue  # dominated: more (or equal) bytes, no less damage
        while len(pts) >= 2:
            a, b = pts[-2], pts[-1]
            # drop b if it lies on or above the segment a -> i (slope a->b not steeper than a->i)
            if (dl[a] - dl[b]) * (nb[i] - nb[a]) <= (dl[a] - dl[i]) * (nb[b] - nb[a]):
                pts.pop()
            else:
                break
        pts.append(i)
    return pts


EXACT_LIMIT = 1 << 18  # enumerate every combination up to this many (e.g. 4 formats x 9 groups)


def _exact(costs: Mapping[str, GroupCosts], budget: int) -> dict[str, int] | None:
    """The optimal choice by enumerating every combination (vectorised), or None if too many."""
    sizes = [len(c.nbytes) for c in costs.values()]
    if int(np.prod(sizes, dtype=np.float64)) > EXACT_LIMIT:
        return None
    grid = np.indices(sizes).reshape(len(sizes), -1)  # (groups, combinations)
    nb = sum(np.asarray(c.nbytes, np.int64)[grid[k]] for k, c in enumerate(costs.values()))
    dl = sum(np.asarray(c.delta, np.float64)[grid[k]] for k, c in enumerate(costs.values()))
    ok = np.flatnonzero(nb <= budget)
    if ok.size == 0:
        return None
    best = ok[np.lexsort((nb[ok], dl[ok]))[0]]  # least Δ, then fewest bytes
    return {g: int(grid[k, best]) for k, g in enumerate(costs)}


def allocate(costs: Mapping[str, GroupCosts], budget: int) -> dict[str, int]:
    """Candidate index per group minimising the summed Δ within ``budget`` bytes (see module doc):
    exact enumeration when there are at most :data:`EXACT_LIMIT` combinations, else the greedy."""
    hulls = {g: _hull(c.nbytes, c.delta) for g, c in costs.items()}
    pos = {g: 0 for g in costs}
    pick = {g: hulls[g][0] for g in costs}
    spent = sum(costs[g].nbytes[pick[g]] for g in costs)
    if spent > budget:
        raise ValueError(f"budget of {budget:,} bytes is below the smallest candidate mix ({spent:,} bytes)")
    exact = _exact(costs, budget)
    if exact is not None:
        return exact
    blocked: set[str] = set()
    while True:
        best, gain = None, 0.0
        for g, h in hulls.items():
            if g in blocked or pos[g] + 1 >= len(h):
                continue
            a, b = h[pos[g]], h[pos[g] + 1]
            extra = costs[g].nbytes[b] - costs[g].nbytes[a]
            if spent + extra > budget:
                blocked.add(g)  # later hull steps of g cost even more
                continue
            ratio = (costs[g].delta[a] - costs[g].delta[b]) / max(extra, 1)
            if best is None or ratio > gain:
                best, gain = g, ratio
        if best is None:
            break
        a, b = hulls[best][pos[best]], hulls[best][pos[best] + 1]
        spent += costs[best].nbytes[b] - costs[best].nbytes[a]
        pos[best] += 1
        pick[best] = b
    improved = True  # leftover bytes: any single switch that fits and lowers Δ (off-hull points too)
    while improved:
        improved = False
        for g, c in costs.items():
            cur = pick[g]
            options = [i for i in range(len(c.nbytes)) if c.delta[i] < c.delta[cur]
                       and spent - c.nbytes[cur] + c.nbytes[i] <= budget]  # fmt: skip
            if options:
                i = min(options, key=lambda k: c.delta[k])
                spent += c.nbytes[i] - c.nbytes[cur]
                pick[g] = i
                improved = True
    return pick


def mixed_precision(
    m: Loaded,
    budget_bytes: int,
    candidates: Iterable[Any] = DEFAULT_CANDIDATES,
    sensitivity: Mapping[str, Any] | None = None,
    *,
    by: Any = "module",
    text: str | None = None,
    window: int = 128,
    windows: int = 2,
    progress: bool = False,
) -> MixedResult:
    """A recipe ``{module: format}`` whose ``quantize_model`` size is at most ``budget_bytes``
    (``QuantReport.total_bytes``: weights as encoded + float32 norms/biases) and whose summed
    per-group sensitivity is smallest (see the module docstring).

    ``sensitivity``: ``{candidate label: SensitivityResult}`` from
    :func:`qlab.quantize.sensitivity.layer_sensitivity` with the same ``by`` (measured here when None, on
    ``text`` -- default :func:`qlab.eval.calibration_text`, held out from the evaluation text --
    with ``window`` x ``windows`` tokens). ``by``: ``"module"``, ``"block"``, ``"type"`` or a
    mapping, as in :func:`qlab.quantize.sensitivity.groups_of`; a group gets one format.
    """
    from .sensitivity import groups_of

    cands = [spec(c) for c in candidates]
    if not cands:
        raise ValueError("candidates is empty: give at least one format")
    if any(c == "f32" for c in cands):
        raise ValueError("candidates must be formats; 'f32' (keep) is not a quantization candidate")
    labels = [c.label() for c in cands]
    if len(set(labels)) != len(labels):
        raise ValueError(f"candidates repeat a format: {labels}")
    if not isinstance(budget_bytes, int | np.integer) or budget_bytes <= 0:
        raise ValueError(f"budget_bytes must be a positive integer, got {budget_bytes!r}")
    groups = groups_of(m, by)
    # every candidate's bytes first: an impossible budget fails before any measurement
    tg = {t.name: t for t in targets(m)}
    grouped = {n for names in groups.values() for n in names}
    other = 4 * _other_params(m) + sum(4 * t.numel for n, t in tg.items() if n not in grouped)  # kept f32
    floor = other + sum(min(tensor_bytes(fallback(c, tg[n].row_length)[0], tg[n].shape) for c in cands)
                        for names in groups.values() for n in names)  # fmt: skip
    if budget_bytes < floor:
        raise ValueError(
            f"budget_bytes={budget_bytes:,} is below the smallest candidate: the cheapest candidate "
            f"for every weight takes {floor:,} bytes ({8 * floor / sum(t.numel for t in tg.values()):.3f} bits/weight)"
        )
    if sensitivity is None:
        from ..eval import calibration_text

        txt = calibration_text() if text is None else text
        sensitivity = _measure(m, groups, cands, dict(text=txt, window=window, windows=windows, progress=progress))
    missing = [lab for lab in labels if lab not in sensitivity]
    if missing:
        raise ValueError(f"sensitivity has no result for candidate(s) {missing}; keys: {sorted(sensitivity)}")
    costs = _group_costs(m, groups, cands, sensitivity)
    pick = allocate(costs, budget_bytes - other)
    predicted = sum(c.delta[pick[g]] for g, c in costs.items())
    for j in range(len(cands)):  # a uniform candidate that fits and is predicted better wins
        size = sum(c.nbytes[j] for c in costs.values())
        if size + other <= budget_bytes and sum(c.delta[j] for c in costs.values()) < predicted:
            pick = {g: j for g in costs}
            predicted = sum(c.delta[j] for c in costs.values())
    # the *requested* candidate per tensor: quantize_model applies the same fallback
    recipe = {n: cands[pick[g]] for g in costs for n in costs[g].names}
    recipe.update({n: Spec("f32") for n in tg if n not in recipe})
    total = other + sum(costs[g].nbytes[pick[g]] for g in costs)
    return MixedResult(recipe, {g: labels[pick[g]] for g in costs}, total, int(budget_bytes), predicted, labels,
                       costs, dict(sensitivity))  # fmt: skip


__all__ = ["mixed_precision", "MixedResult", "allocate", "uniform_bytes", "uniform_within", "tensor_bytes",
           "DEFAULT_CANDIDATES"]  # fmt: skip
