"""Weight-only quantization of a whole model, simulated in float32 ("fake quantization").

``quantize_model(m, recipe)`` replaces every selected weight ``w`` by ``decode(encode(w))`` with a
format from :mod:`qlab.formats`, in place, and reports per tensor the format asked for and the
one used (llama.cpp's row-length fallback, see :mod:`qlab.quantize.recipes`), the exact storage in
bytes (``Encoded.nbytes``: codes, scales and metadata) and the error (SQNR, MSE, max |error|).

The model then runs in float32 exactly as before, only its weights sit on the format's grid: the
accuracy measured is the format's, the speed and memory are not (that needs a real kernel, e.g.
llama.cpp via :mod:`qlab.backends.llamacpp`). Activations are not quantized.

Sizes count every parameter: quantized weights at their encoded size, everything else (norms,
biases, weights kept by the recipe) as float32 -- llama.cpp's convention for "bits per weight".
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .. import formats
from ..core.metrics import weight_error
from ..core.model import ModelLike, torch_module
from ..core.report import Report
from .configs import WeightOnlyConfig
from .recipes import KEEP, Choice, Target, resolve_recipe, spec, targets


@dataclass
class LayerReport:
    """One weight tensor after ``quantize_model``."""

    name: str
    shape: tuple[int, ...]
    params: int
    requested: str
    used: str
    reason: str
    nbytes: int
    sqnr_db: float
    mse: float
    max_abs_err: float
    aliases: tuple[str, ...] = ()

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / self.params if self.params else float("nan")

    @property
    def fell_back(self) -> bool:
        """True when the format used is not the one the recipe asked for (row-length fallback)."""
        return self.used != self.requested


@dataclass
class QuantReport(Report):
    """What ``quantize_model`` did: per-tensor rows plus whole-model sizes."""

    layers: list[LayerReport]
    other_params: int = 0  # parameters outside the recipe's reach (norms, biases): float32
    recipe: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


    @property
    def fallbacks(self) -> list[LayerReport]:
        return [r for r in self.layers if r.fell_back]

    def by_format(self) -> dict[str, dict[str, int]]:
        """Tensors, parameters and bytes per format used."""
        out: dict[str, dict[str, int]] = {}
        for r in self.layers:
            d = out.setdefault(r.used, {"tensors": 0, "params": 0, "nbytes": 0})
            d["tensors"] += 1
            d["params"] += r.params
            d["nbytes"] += r.nbytes
        return out

    def summary(self) -> str:
        mix = ", ".join(f"{k} x{v['tensors']}" for k, v in self.by_format().items())
        fb = f"; {len(self.fallbacks)} tensor(s) fell back" if self.fallbacks else ""
        return (
            f"{self.recipe or 'recipe'}: {self.total_bytes / 1e6:.2f} MB "
            f"({self.bits_per_weight:.3f} bits/weight, fp32 {self.fp32_bytes / 1e6:.2f} MB) [{mix}]{fb}"
        )

    COLUMNS = (
        ("name", "tensor", None), ("shape", "shape", None), ("requested", "requested", None),
        ("used", "used", None), ("bpw", "bits/w", ".3f"), ("kb", "KB", ".1f"),
        ("sqnr_db", "SQNR dB", ".2f"), ("reason", "note", None),
    )  # fmt: skip
    NOUN = "tensor"

    def row(self, layer: LayerReport) -> dict[str, Any]:
        """Per-tensor row (name, shape, requested -> used, bits/weight, KB, SQNR, reason)."""
        return {**super().row(layer), "kb": layer.nbytes / 1e3}

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "total_bytes": self.total_bytes,
            "fp32_bytes": self.fp32_bytes,
            "total_params": self.total_params,
            "bits_per_weight": self.bits_per_weight,
            "other_params": self.other_params,
            "layers": [{**asdict(r), "shape": list(r.shape), "aliases": list(r.aliases)} for r in self.layers],
        }

class WeightSnapshot:
    """Copies of a model's weight targets, to quantize from repeatedly and to restore.

    Sweeps quantize the same model with many formats; quantizing from the snapshot (never from
    already-quantized weights) avoids reloading the model between formats. The snapshot
    remembers which weights ``quantize_model(..., source=snapshot)`` overwrote (``dirty``), so
    that a later recipe only has to copy those back where it keeps the float weight.
    """

    def __init__(self, model: ModelLike) -> None:
        self.weights = {t.name: t.weight.detach().clone() for t in targets(model)}
        self.dirty: set[str] = set()

    def restore(self, model: ModelLike, names: Iterable[str] | None = None) -> None:
        """Put the original weights back (in place): all of them, or those of ``names``."""
        keep = None if names is None else set(names)
        with torch.no_grad():
            for t in targets(model):
                if keep is None or t.name in keep:
                    t.weight.copy_(self.weights[t.name])
                    self.dirty.discard(t.name)


def _compute(
    t: Target, choice: Choice, source: torch.Tensor | None, imatrix: Any = None, errors: bool = True
) -> tuple[Any, LayerReport]:
    """A function giving the new weight of ``t`` (``None``: leave it untouched) and its report;
    changes nothing. ``imatrix``: ``t``'s importance vector, given to formats with that option.
    Only the encoding is kept (decoded again when written), so validating a whole model first
    costs its encoded size, not a second float32 copy. A format error is re-raised
    naming the layer. ``errors=False``: no SQNR/MSE/max-error (NaN in the report), so no decode
    here -- the weight is decoded once, when written (sweeps, which keep only the sizes)."""
    x = formats.base.as_float32(t.weight.detach() if source is None else source).reshape(t.shape[0], -1)
    if choice.used == KEEP:
        y, nbytes = x, 4 * x.size
    else:
        fmt = formats.get(choice.used)
        opts = dict(choice.used.options)
        if imatrix is not None and "imatrix" in fmt.defaults:
            opts["imatrix"] = imatrix
        try:
            enc = fmt.encode(x, **opts)
        except (ValueError, TypeError) as e:
            raise type(e)(
                f"layer {t.name!r} (shape {tuple(t.shape)}, format {choice.used.label()}): {e}; "
                f"no weight of the model was changed"
            ) from e
        y, nbytes = (fmt.decode(enc) if errors else None), enc.nbytes
    if y is None:
        sqnr = mse = mx = float("nan")
    else:
        sqnr, mse, mx = weight_error(x, y) if y is not x else (float("inf"), 0.0, 0.0)
    if y is x:  # a kept weight: untouched, or copied back from the snapshot
        new = None if source is None else (lambda: x)
    else:
        new = functools.partial(fmt.decode, enc)  # deterministic: the same y when written
    del y
    report = LayerReport(
        t.name, t.shape, t.numel, choice.requested.label(), choice.used.label(), choice.reason,
        int(nbytes), sqnr, mse, mx, t.aliases,
    )  # fmt: skip
    return new, report


def quantize_model(
    model: ModelLike,
    recipe: Any,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    *,
    source: WeightSnapshot | None = None,
    progress: bool = False,
    imatrix: Any = None,
    errors: bool = True,
) -> QuantReport:
    """``qlab.quantize_(model, WeightOnlyConfig(recipe=recipe, include=..., exclude=..., imatrix=...))``: an alias.

    Quantizes ``model``'s Linear / Embedding / Conv weights in place and returns a
    :class:`QuantReport`; see :func:`weight_only`.

    >>> m = qlab.models.load("smollm2-135m")                    # doctest: +SKIP
    >>> print(qlab.quantize_model(m, "q4_k_m").summary())       # doctest: +SKIP
    """
    config = WeightOnlyConfig(recipe=recipe, include=include, exclude=exclude, imatrix=imatrix)
    return weight_only(model, config, source=source, progress=progress, errors=errors)


def weight_only(
    model: ModelLike,
    config: WeightOnlyConfig,
    calibration: Any = None,
    *,
    source: WeightSnapshot | None = None,
    progress: bool = False,
    errors: bool = True,
) -> QuantReport:
    """Quantize ``model``'s Linear / Embedding / Conv weights in place; return a :class:`QuantReport`
    (the method ``qlab.quantize_`` runs for a :class:`WeightOnlyConfig`; no calibration).

    ``config.recipe``: a format name (``"q4_k"``), ``(name, options)``, a mapping of fnmatch patterns
    to formats, or a llama.cpp mix (``"q4_k_m"``); see :mod:`qlab.quantize.recipes`.
    ``config.include`` / ``config.exclude``: fnmatch patterns selecting weights (others stay
    float32). Tied weights (SmolLM2's ``lm_head`` is ``embed_tokens``) are quantized once, with the
    embedding's format. ``source``: a :class:`WeightSnapshot` to quantize from instead of the
    current weights (sweeps); weights the recipe keeps are reset to the snapshot where it had
    overwritten them. ``errors=False`` skips the per-tensor SQNR / MSE / max error (NaN in the
    report) and with it one decode of every weight (sweeps keep only the sizes).
    """
    from tqdm.auto import tqdm

    recipe, include, exclude = config.recipe, config.include, config.exclude
    mod = torch_module(model)
    choices = resolve_recipe(mod, recipe, include, exclude)
    vectors: dict[str, Any] = {}
    if config.imatrix is not None:
        from .imatrix import module_vectors

        vectors = module_vectors(mod, config.imatrix)
    tg = targets(mod)
    # every layer is quantized first and written only when all succeeded: a bad layer (NaN,
    # overflow) raises naming it and leaves the model as it was
    results = []
    for t in tqdm(tg, desc="quantizing", disable=not progress, leave=False):
        c = choices[t.name]
        from_source = not (source is None or (c.used == KEEP and t.name not in source.dirty))
        src = source.weights[t.name] if from_source else None
        results.append((t, c, from_source, *_compute(t, c, src, vectors.get(t.name), errors)))
    layers = []
    with torch.no_grad():
        for t, c, from_source, new, report in results:
            if new is not None:
                t.weight.copy_(torch.from_numpy(new()).reshape(t.shape))
            if from_source:
                (source.dirty.discard if c.used == KEEP else source.dirty.add)(t.name)
            layers.append(report)
    covered = {id(t.weight) for t in tg}
    other = sum(p.numel() for p in mod.parameters() if id(p) not in covered)
    report = QuantReport(layers, other, recipe_label(recipe))
    if config.imatrix is not None:
        report.extra["imatrix_tensors"] = sorted(vectors)
    return report


def recipe_label(recipe: Any) -> str:
    """A short name for a recipe (tables, cache keys are built from ``recipe_key``)."""
    if isinstance(recipe, str):
        return recipe
    if isinstance(recipe, Mapping):
        return "custom recipe"
    return spec(recipe).label()


def _register() -> None:
    from .api import register_method

    register_method(WeightOnlyConfig, weight_only)


_register()

__all__ = ["quantize_model", "weight_only", "QuantReport", "LayerReport", "WeightSnapshot"]
