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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from .recipes import torch_module

Batch = torch.Tensor | Mapping[str, torch.Tensor]


def _no_batches(what: str) -> ValueError:
    return ValueError(
        f"calibration has no batches ({what}); static quantization needs at least one batch of "
        f"representative inputs, e.g. calibration=x_train[:256] or a list of tokenized batches"
    )


def batches(data: Any, model: Any = None, batch_size: int = 32, seq_len: int = 512) -> list[Batch]:
    """The model inputs of ``data`` as a list of batches (see the module docstring)."""
    if data is None:
        raise _no_batches("calibration=None")
    tok = getattr(model, "tokenizer", None)
    if isinstance(data, str):
        return _text(data, model, tok, batch_size, seq_len)
    if isinstance(data, torch.Tensor):
        if data.ndim == 0 or len(data) == 0:
            raise _no_batches(f"an empty tensor of shape {tuple(data.shape)}")
        return list(data.split(batch_size))
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data) and (
        data[1].ndim == 1 and len(data[0]) == len(data[1]) and data[1].dtype in (torch.int64, torch.int32)
    ):
        return batches(data[0], model, batch_size, seq_len)  # (x, y) labelled data
    if not isinstance(data, Iterable):
        raise TypeError(f"calibration must be tensors, dicts, (x, y) pairs or text; got {type(data).__name__}")
    items = list(data)
    if not items:
        raise _no_batches("an empty list")
    if all(isinstance(s, str) for s in items):
        return _sentences(items, model, tok, batch_size)
    out: list[Batch] = []
    for b in items:
        if isinstance(b, tuple | list) and len(b) == 2 and isinstance(b[0], torch.Tensor):
            b = b[0]
        if isinstance(b, torch.Tensor | Mapping):
            if (len(b) if isinstance(b, torch.Tensor) and b.ndim else 1) > 0:
                out.append(b)
        else:
            raise TypeError(f"a calibration batch must be a tensor, a dict or an (x, y) pair; got {type(b).__name__}")
    if not out:
        raise _no_batches("every batch is empty")
    return out


def _need_tokenizer(tok: Any) -> None:
    if tok is None:
        raise ValueError("text calibration needs a model with a tokenizer (pass a qlab.models.load() result)")


def _text(text: str, model: Any, tok: Any, batch_size: int, seq_len: int) -> list[Batch]:
    if not text.strip():
        raise _no_batches("empty text")
    _need_tokenizer(tok)
    if getattr(model, "kind", "") == "causal-lm":
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        return [{"input_ids": w[None]} for w in ids.split(seq_len)]
    return _sentences([s for s in text.splitlines() if s.strip()], model, tok, batch_size)


def _sentences(sentences: list[str], model: Any, tok: Any, batch_size: int) -> list[Batch]:
    _need_tokenizer(tok)
    cfg = getattr(model, "config", None)
    max_len = (cfg.get("max_seq_length") if isinstance(cfg, dict) else None) or 512
    return [
        dict(tok(sentences[i : i + batch_size], padding=True, truncation=True, max_length=max_len, return_tensors="pt"))
        for i in range(0, len(sentences), batch_size)
    ]


def run(module: torch.nn.Module, batch: Batch) -> Any:
    """One forward pass (``module(**batch)`` for dicts)."""
    return module(**batch) if isinstance(batch, Mapping) else module(batch)


def feed(model: Any, data: list[Batch], progress: bool = True, desc: str = "calibrating") -> int:
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
    model: Any,
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
