"""Per-layer sensitivity: quantize one layer (or group) at a time, measure what it costs.

Each group of weights is quantized alone, the rest of the model stays float, and the model is
compared with its float self: ΔKL (mean KL divergence of the next-token distribution), Δ
perplexity and top-1 agreement for causal LMs, or the change of ``m.evaluate()``'s metric for
other models. The float reference forward runs once; weights are restored from a snapshot after
every group. The ranking says where extra bits pay (llama.cpp's mixes give ``attn_v`` and
``ffn_down`` more bits for this reason) and which layers to keep in higher precision.

Cost: one forward pass per group -- ``by="module"`` on SmolLM2 is 211 passes (use few, short
windows), ``by="block"`` 31, ``by="type"`` 8.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..core.lm import compare as lm_compare
from ..core.lm import reference as lm_reference
from ..core.model import Loaded, ModelLike
from ..core.report import format_table
from .model import WeightSnapshot, quantize_model
from .recipes import Target, targets


def groups_of(model: ModelLike, by: str | Mapping[str, str | Iterable[str]] = "module") -> dict[str, list[str]]:
    """Group the weight targets: ``"module"`` (each tensor), ``"block"`` (``model.layers.N``;
    tensors outside blocks alone), ``"type"`` (``q_proj``, ``down_proj``, ... across blocks) or a
    mapping ``{group: fnmatch pattern(s)}``. Values are lists of module names."""
    tg = targets(model)
    out: dict[str, list[str]] = {}
    if isinstance(by, Mapping):
        for g, pats in by.items():
            pats = [pats] if isinstance(pats, str) else list(pats)
            out[g] = [t.name for t in tg if any(t.matches(p) for p in pats)]
            if not out[g]:
                raise ValueError(f"group {g!r}: no weight matches {pats}")
        return out

    def key(t: Target) -> str:
        if by == "module":
            return t.name
        if by == "block":
            m = re.match(r"(.*?(?:layers|layer|h|blocks)\.\d+)\.", t.name)
            return m.group(1) if m else t.name
        if by == "type":
            return re.sub(r".*?(?:layers|layer|h|blocks)\.\d+\.", "", t.name)
        raise ValueError(f"by must be 'module', 'block', 'type' or a mapping, got {by!r}")

    for t in tg:
        out.setdefault(key(t), []).append(t.name)
    return out


@dataclass
class SensitivityResult:
    """One row per group: group, tensors, params and the metrics (deltas against the float model)."""

    rows: list[dict[str, Any]]
    format: str
    reference: dict[str, float]

    def ranked(self, key: str | None = None) -> list[dict[str, Any]]:
        """Rows from the most to the least sensitive (by ``kl`` for LMs, else the metric delta)."""
        key = key or ("kl" if "kl" in self.rows[0] else "delta")
        return sorted(self.rows, key=lambda r: -abs(r[key]))

    def table(self, top: int | None = None, key: str | None = None) -> str:
        rows = self.ranked(key)[:top]
        lm = "kl" in self.rows[0]
        cols = [("group", "group", None), ("tensors", "tensors", "d"), ("params", "params", ",d")]
        cols += [("kl", "KL", ".5f"), ("delta_perplexity", "Δppl", "+.3f"), ("top1", "top-1", ".4f")] if lm else [
            ("metric", "metric", ".4f"), ("delta", "Δ", "+.4f")]  # fmt: skip
        return f"sensitivity to {self.format}\n" + format_table(rows, cols)


def layer_sensitivity(
    m: Loaded,
    fmt: Any,
    *,
    by: str | Mapping[str, str | Iterable[str]] = "module",
    text: str | None = None,
    window: int = 256,
    windows: int = 4,
    metric: str | None = None,
    eval_kwargs: Mapping[str, Any] | None = None,
    batch: int = 4,
    progress: bool = True,
) -> SensitivityResult:
    """Quantize each group of ``by`` alone with ``fmt`` (a format or any recipe) and measure it.

    Causal LMs are scored on ``windows`` windows of ``window`` tokens of ``text`` (WikiText-2);
    other models with ``m.evaluate(**eval_kwargs)[metric]``. Weights are restored at the end.
    """
    from tqdm.auto import tqdm

    lm = getattr(m, "kind", "causal-lm") == "causal-lm"
    groups = groups_of(m, by)
    sizes = {t.name: t.numel for t in targets(m)}
    snapshot = WeightSnapshot(m)
    if lm:
        ref = lm_reference(m, text, window, windows, torch.float16, progress, batch)
        reference = {"perplexity": ref.perplexity, "kl": 0.0, "top1": 1.0}
    else:
        base = dict(m.evaluate(**(eval_kwargs or {})))
        metric = metric or next(k for k, v in base.items() if isinstance(v, int | float))
        reference = {metric: float(base[metric])}
    rows = []
    try:
        for g, names in tqdm(groups.items(), desc=f"sensitivity ({fmt})", disable=not progress):
            quantize_model(m, fmt, include=names)
            row: dict[str, Any] = {"group": g, "tensors": len(names), "params": sum(sizes[n] for n in names)}
            if lm:
                r = lm_compare(m, ref, progress=False, batch=batch)
                row.update(kl=r["kl"], perplexity=r["perplexity"], top1=r["top1"])
                row["delta_perplexity"] = r["perplexity"] - ref.perplexity
            else:
                v = float(dict(m.evaluate(**(eval_kwargs or {})))[metric])
                row.update(metric=v, delta=v - reference[metric])
            rows.append(row)
            snapshot.restore(m, names)
    finally:
        snapshot.restore(m)
    return SensitivityResult(rows, str(fmt), reference)


__all__ = ["layer_sensitivity", "groups_of", "SensitivityResult"]
