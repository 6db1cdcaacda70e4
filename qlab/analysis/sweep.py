"""Size-vs-accuracy sweeps: one model, many formats (or recipes), cached on disk.

``sweep(m, ["q8_0", "q4_k", "nf4"])`` quantizes ``m`` with each recipe (weights restored from a
snapshot in between: no reload), measures it and returns one row per recipe -- bits per weight,
model megabytes, the metrics and the time taken -- plus the float reference row.

* Causal LMs: perplexity, KL divergence and top-1 agreement against the float model on
  WikiText-2 windows; the reference forward runs once per sweep (:mod:`qlab.core.lm`, its
  log-probabilities kept in float16; columns ``perplexity``, ``nll``, ``kl``, ``top1``: the
  names of :data:`qlab.core.lm.METRICS`).
* Other models: their default evaluation (``m.evaluate()``, e.g. MiniLM's embedding cosine
  similarity or digits-cnn's accuracy), run on the float model once for the reference row.

Results are cached as JSON under ``cache_dir`` (default ``$QLAB_CACHE`` or ``~/.cache/qlab``),
keyed by a fingerprint of the model's float weights, the recipe with its options, include /
exclude, the evaluation parameters (text hash, window, windows) and the qlab version; a cached
recipe costs neither quantization nor a forward pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core import lm as lm_eval
from ..core.model import Loaded, torch_module, weights_digest
from ..core.pareto import HIGHER_IS_BETTER, higher_is_better, pareto_front, plot_pareto
from ..core.protocols import protocol as make_protocol
from ..core.report import format_table
from ..core.text import wikitext2_test
from ..files import write_text
from ..quantize.model import WeightSnapshot, quantize_model, recipe_label
from ..quantize.recipes import spec

#: the :data:`qlab.core.lm.METRICS` a causal-LM sweep row keeps (the on-disk cache holds these)
LM_COLUMNS = ("perplexity", "nll", "kl", "top1")


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where sweep results live: ``path``, else ``$QLAB_CACHE``, else ``~/.cache/qlab``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("QLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "qlab"


def recipe_key(recipe: Any) -> Any:
    """A JSON-able canonical form of a recipe (format names lower-cased, options sorted)."""
    if isinstance(recipe, Mapping):
        return [[str(p), recipe_key(v)] for p, v in recipe.items()]
    if isinstance(recipe, str) and not recipe.lower().startswith("llama:"):
        try:
            s = spec(recipe)
            return [str(s), dict(sorted(s.options.items()))]
        except ValueError:
            return recipe.lower()  # a llama.cpp mix name
    if isinstance(recipe, str):
        return recipe.lower()
    s = spec(recipe)
    return [str(s), {k: s.options[k] for k in sorted(s.options)}]


def model_fingerprint(m: Loaded) -> str:
    """A hash of every parameter's and buffer's full bytes (:func:`qlab.core.model.weights_digest`):
    any changed value, also a swap inside a row that keeps its sum, gives another cache key."""
    return weights_digest(m)[:32]


@dataclass
class SweepResult:
    """Rows of a sweep (``rows[0]`` is the float reference) and the metric the plot uses."""

    rows: list[dict[str, Any]]
    metric: str
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def maximize(self) -> bool:
        return higher_is_better(self.metric)

    def pareto(self) -> list[dict[str, Any]]:
        """Rows on the Pareto front of (bits per weight, metric), reference excluded."""
        rows = [r for r in self.rows if not r.get("reference")]
        mask = pareto_front([r["bits_per_weight"] for r in rows], [r[self.metric] for r in rows], self.maximize)
        return [r for r, on in zip(rows, mask, strict=True) if on]

    def table(self) -> str:
        """Size-vs-accuracy table: format, bits/weight, MB, the metrics, seconds, Pareto mark."""
        front = {id(r) for r in self.pareto()}
        rows = [{**r, "front": "*" if id(r) in front else ""} for r in self.rows]
        keys = [k for k in ("perplexity", "kl", "top1") if any(k in r for r in rows)]
        keys += sorted({k for r in rows for k, v in r.get("metrics", {}).items() if isinstance(v, int | float)})
        for r in rows:
            r.update({k: v for k, v in r.get("metrics", {}).items() if k not in r})
        fmt = {"perplexity": ".3f", "kl": ".5f", "top1": ".4f"}
        cols = [("format", "format", None), ("bits_per_weight", "bits/weight", ".3f"), ("mb", "MB", ".2f")]
        cols += [(k, {"top1": "top-1", "kl": "KL"}.get(k, k), fmt.get(k, ".4f")) for k in keys]
        cols += [("seconds", "s", ".1f"), ("front", "pareto", None)]
        return format_table(rows, cols)

    def plot(self, ax: Any = None, path: str | os.PathLike | None = None, **kw: Any) -> Any:
        """Pareto plot (bits per weight vs the metric); see :func:`qlab.core.pareto.plot_pareto`."""
        return plot_pareto(self, ax=ax, path=path, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "metric": self.metric, "params": self.params, "rows": self.rows}


def _size_row(report: Any) -> dict[str, Any]:
    return {
        "bits_per_weight": report.bits_per_weight,
        "mb": report.total_bytes / 1e6,
        "fallbacks": len(report.fallbacks),
        "used": {k: v["tensors"] for k, v in report.by_format().items()},
    }


def sweep(
    model: Loaded | str,
    formats: Sequence[Any] | Mapping[str, Any],
    metric: str | None = None,
    *,
    text: str | None = None,
    window: int = 512,
    windows: int = 16,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    eval_kwargs: Mapping[str, Any] | None = None,
    cache: bool = True,
    cache_path: str | os.PathLike | None = None,
    batch: int = 4,
    progress: bool = True,
    protocol: str = "full-window",
    reports: dict[str, Any] | None = None,
) -> SweepResult:
    """Quantize ``model`` with every recipe in ``formats``, measure each, return a :class:`SweepResult`.

    ``model``: a ``qlab.models.load`` result or a model name. ``formats``: recipes (format names,
    ``(name, options)``, llama.cpp mixes such as ``"q4_k_m"``, or pattern mappings), or a mapping
    ``{label: recipe}`` to name the rows yourself. ``metric``: the y-axis of the Pareto front
    (``"kl"`` -- the default --, ``"perplexity"`` or ``"top1"`` for causal LMs; a key of
    ``m.evaluate()``'s result otherwise, by default its first number). ``include``/``exclude``:
    which weights every recipe applies to. ``protocol``: the perplexity protocol of causal LMs
    (``"full-window"`` or ``"llama-perplexity"``, :mod:`qlab.core.protocols`). ``reports``: a dict
    that receives each format's :class:`~qlab.core.klreport.KLReport` under its label (causal
    LMs; token-level arrays are not cached, so every format is measured again). The model's
    weights are restored at the end.
    """
    from tqdm.auto import tqdm

    if isinstance(model, str):
        from ..models import load

        model = load(model)
    kind = getattr(model, "kind", "causal-lm")
    lm = kind == "causal-lm"
    if lm and metric not in (None, "kl", "perplexity", "top1", "nll"):
        raise ValueError(f"metric {metric!r}: a causal LM sweep measures 'kl', 'perplexity', 'top1' and 'nll'")
    if lm:
        text = wikitext2_test() if text is None else text
        evalp: dict[str, Any] = {"text": hashlib.sha1(text.encode()).hexdigest(), "window": window, "windows": windows}
        if protocol != "full-window":  # the default stays out of the key: earlier cache entries stay valid
            evalp["protocol"] = make_protocol(protocol, window, windows).name
    else:
        evalp = {"evaluate": dict(sorted((eval_kwargs or {}).items()))}
    from .. import __version__

    base = {"qlab": __version__, "model": model_fingerprint(model), "kind": kind, "eval": evalp}
    folder = cache_dir(cache_path) / "sweeps"

    def key(recipe: Any) -> Path:
        sel = {} if recipe == "f32" else {"include": include, "exclude": exclude}  # the reference has none
        blob = json.dumps({**base, **sel, "recipe": recipe_key(recipe)}, sort_keys=True, default=str)
        return folder / f"{hashlib.sha256(blob.encode()).hexdigest()[:32]}.json"

    def cached(recipe: Any) -> dict[str, Any] | None:
        p = key(recipe)
        if cache and p.exists() and not (lm and reports is not None and recipe != "f32"):
            try:
                row = json.loads(p.read_text())
            except (OSError, ValueError):
                return None
            # valid JSON that is not a row (a list, a number, null) is a damaged entry: recompute
            return {**row, "cached": True} if isinstance(row, dict) else None
        return None

    def store(recipe: Any, row: dict[str, Any]) -> None:
        if cache:
            folder.mkdir(parents=True, exist_ok=True)
            write_text(key(recipe), json.dumps(row, default=float))  # temp file + rename

    labelled = list(formats.items()) if isinstance(formats, Mapping) else [(recipe_label(f), f) for f in formats]
    ref_lm: lm_eval.Reference | None = None
    snapshot: WeightSnapshot | None = None

    def measure(label: str = "") -> dict[str, Any]:
        if lm:
            rep = lm_eval.kl_report(model, ref_lm, progress=progress, batch=batch)
            if reports is not None:
                reports[label] = rep
            got = rep.metrics()
            return {k: got[k] for k in LM_COLUMNS}
        return {"metrics": dict(model.evaluate(**(eval_kwargs or {})))}

    # the float reference row (f32 everywhere: 4 bytes per parameter)
    n_params = sum(p.numel() for p in torch_module(model).parameters())
    ref_row = cached("f32")
    todo = [f for _, f in labelled if cached(f) is None]
    if todo or ref_row is None:
        t0 = time.perf_counter()
        snapshot = WeightSnapshot(model)
        if lm:
            ref_lm = lm_eval.reference(model, text, window, windows, torch.float16, progress, batch, protocol)
            nll = ref_lm.nll.double().mean().item()
            ref_metrics = {"perplexity": ref_lm.perplexity, "nll": nll, "kl": 0.0, "top1": 1.0}
        else:
            ref_metrics = measure()
        if ref_row is None:
            ref_row = {"format": "f32", "bits_per_weight": 32.0, "mb": 4 * n_params / 1e6, "fallbacks": 0,
                       **ref_metrics, "seconds": time.perf_counter() - t0}  # fmt: skip
            store("f32", ref_row)
    rows = [{**ref_row, "format": "f32 (reference)", "reference": True}]
    try:
        bar = tqdm(labelled, desc="sweep", disable=not progress)
        for label, recipe in bar:
            bar.set_postfix_str(label)
            row = cached(recipe)
            if row is None:
                t0 = time.perf_counter()
                report = quantize_model(model, recipe, include, exclude, source=snapshot, errors=False)
                row = {"format": label, **_size_row(report), **measure(label), "seconds": 0.0}
                row["seconds"] = time.perf_counter() - t0
                store(recipe, row)
            rows.append({**row, "format": label})
    finally:
        if snapshot is not None:
            snapshot.restore(model)
    if metric is None:
        metric = "kl" if lm else next(k for k, v in rows[0].get("metrics", {}).items() if isinstance(v, int | float))
    for r in rows:  # flatten evaluate() metrics so the plot and the front can use them
        r.update({k: v for k, v in r.get("metrics", {}).items() if isinstance(v, int | float)})
    if any(metric not in r for r in rows):
        raise ValueError(f"metric {metric!r} is not measured; available: {sorted(k for k in rows[0] if k != 'format')}")
    name = getattr(model, "name", type(torch_module(model)).__name__)
    params = {"window": window, "windows": windows} if lm else dict(eval_kwargs or {})
    if lm and protocol != "full-window":
        params["protocol"] = protocol
    return SweepResult(rows, metric, name, params)


__all__ = ["HIGHER_IS_BETTER", "sweep", "SweepResult", "cache_dir", "model_fingerprint", "recipe_key",
           "higher_is_better"]
