"""Calibration data: turning what a learner passes into model inputs, and studying its effect.

``calibration`` may be

* a tensor of inputs (split into batches of ``batch_size`` along the first axis), or a list of
  tensors (one per batch);
* labelled data ``(x, y)`` or a list of ``(x, y)`` batches (the labels are ignored here);
* tokenizer output dicts (``{"input_ids": ..., "attention_mask": ...}``), passed as ``model(**d)``;
* text, for a model with a tokenizer: one ``str`` (a causal LM reads it in windows of
  ``seq_len`` tokens; a sentence encoder one sentence per non-empty line) or a list of ``str``
  (sentences, tokenized in padded batches).

:func:`calibration_study` measures how the amount and the kind of calibration data change the
accuracy of a static PTQ model; :func:`digits_calibration_sets` makes representative and
unrepresentative sets for ``digits-cnn``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..core.calibration import Batch, run_batch, to_batches
from ..core.model import ModelLike, torch_module

batches = to_batches  # ``qlab.quantize.calibration.batches``: the name the pipelines and lessons use
run = run_batch

def feed(model: ModelLike, data: list[Batch], progress: bool = True, desc: str = "calibrating") -> int:
    """Run every batch through the model (no gradients, eval mode); return the number of batches."""
    from tqdm.auto import tqdm

    mod = torch_module(model)
    was = mod.training
    mod.eval()
    try:
        with torch.inference_mode():
            for b in tqdm(data, desc=desc, disable=not progress, leave=False):
                run(mod, b)
    finally:
        mod.train(was)
    return len(data)


# -- the effect of calibration data -----------------------------------------------------------------
def digits_calibration_sets(n: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    """Calibration sets of ``n`` images for digits-cnn: representative (``train``: training images)
    and unrepresentative (``inverted``: ``1 - x``, white digits on black become black on white;
    ``noise``: uniform noise; ``dim``: the training images at a quarter of their brightness)."""
    from ..models.digits import load_split

    x, _ = load_split("train")
    g = torch.Generator().manual_seed(seed)
    x = x[torch.randperm(len(x), generator=g)[:n]]
    return {"train": x, "inverted": 1 - x, "noise": torch.rand(x.shape, generator=g), "dim": x * 0.25}


def calibration_study(
    model: ModelLike,
    config: Any,
    sets: Mapping[str, torch.Tensor | Sequence[Any]],
    sizes: Sequence[int] = (1, 4, 16, 64, 256),
    evaluate: Callable[[Any], dict[str, float]] | None = None,
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """Quantize a fresh copy of ``model`` with ``config`` once per calibration set and size, and
    evaluate it. ``sets``: name -> inputs (tensor or list of samples; the first ``size`` are used).
    Returns one row per run: ``{"data", "size", <metrics>, "seconds"}``, float first (``size`` 0).

    >>> m = qlab.models.load("digits-cnn")                                        # doctest: +SKIP
    >>> rows = calibration_study(m, PTQConfig(weights="int4", activations="int4"),
    ...                          digits_calibration_sets(256))                      # doctest: +SKIP
    """
    from .api import quantize_

    evaluate = evaluate or (lambda m: m.evaluate())
    fresh = (lambda: model.fresh()) if hasattr(model, "fresh") else (lambda: copy.deepcopy(model))
    rows = [{"data": "float", "size": 0, **evaluate(fresh()), "seconds": 0.0}]
    for name, data in sets.items():
        for size in sizes:
            if size > len(data):
                raise ValueError(f"calibration set {name!r} has {len(data)} samples, size {size} asked")
            m = fresh()
            t0 = time.perf_counter()
            quantize_(m, _quiet(config), calibration=batches(data[:size], m, batch_size))
            rows.append({"data": name, "size": size, **evaluate(m), "seconds": time.perf_counter() - t0})
    return rows


def _quiet(config: Any) -> Any:
    from dataclasses import replace

    return replace(config, progress=False) if hasattr(config, "progress") else config


__all__ = ["batches", "feed", "run", "calibration_study", "digits_calibration_sets"]
