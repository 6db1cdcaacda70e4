"""LLM.int8(): int8 vector-wise matmul with a mixed-precision decomposition of outlier features.

Dettmers et al., 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale"
(arXiv:2208.07339), section 3: the weight is int8 per output row, the input int8 per token
(row), and every input feature (column) holding a value with ``|x| >= threshold`` (6.0 in the
paper) is taken out of the int8 product and multiplied in 16-bit with the weight's columns::

    Y = sum_{j in O} X[:, j] W[:, j]^T  (fp16)  +  S_X S_W * sum_{j not in O} Xq[:, j] Wq[:, j]^T  (int8)

    report = qlab.quantize_(m, LLMInt8Config(threshold=6.0))   # no calibration: decided per call
    qlab.eval.perplexity(m)                                     # runs the decomposition
    outlier_report(m)                                           # which layers met outlier columns

Each ``nn.Linear`` is replaced by :class:`LLMInt8Linear` (a subclass, so ``isinstance`` checks
still hold; it shares the original parameters, so tied embeddings stay tied and untouched). Its
forward computes :func:`qlab.backends.bitsandbytes.llm_int8_linear` -- qlab's simulation of
bitsandbytes' ``Linear8bitLt`` that the backend tests hold to the real module -- with the int8
weight dequantized once at conversion instead of on every call (``int8_weight`` of SmolLM2's
49152 x 576 output layer takes seconds); the tests check the two are bit-identical. Each call
also records which columns were outliers (:func:`outlier_report`). ``threshold=inf`` gives plain
vector-wise int8 (no column ever exceeds it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import formats
from ..core.llm_int8 import int8_weight, llm_int8_linear, outlier_columns
from ..core.metrics import error_stats
from ..core.model import ModelLike
from . import _layers as L
from ._report import PipelineReport
from .calibration import batches, feed
from .configs import LLMInt8Config
from .recipes import torch_module


def llm_int8_matmul(x: torch.Tensor, w_hat: torch.Tensor, bias: torch.Tensor | None, threshold: float) -> torch.Tensor:
    """``llm_int8_linear(x, w, bias, threshold)`` given ``w_hat = int8_weight(w)`` (quantized once per
    layer): qlab's bitsandbytes simulation itself, so the two are bit-identical by construction."""
    return llm_int8_linear(x, None, bias, threshold, w_hat=w_hat)


class LLMInt8Linear(nn.Linear):
    """An ``nn.Linear`` whose forward computes LLM.int8() at run time (see the module docstring).

    ``hits[j]``: in how many calls column ``j`` was an outlier; ``calls``/``tokens``: what it has
    seen; ``max_columns``: the most outlier columns of a single call.
    """

    def __init__(self, lin: nn.Linear, threshold: float, name: str = "") -> None:
        nn.Module.__init__(self)  # no fresh parameters: share lin's (tied weights stay tied)
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.weight = lin.weight
        self.bias = lin.bias
        self.threshold = float(threshold)
        self.qlab_name = name
        self.register_buffer("w_hat", int8_weight(lin.weight.detach().float()), persistent=False)
        self.reset_stats()

    def reset_stats(self) -> None:
        self.hits = np.zeros(self.in_features, np.int64)
        self.calls = 0
        self.tokens = 0
        self.max_columns = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):  # the sum: one cheap test
            raise ValueError(f"{self.qlab_name or 'LLMInt8Linear'}: input activation has NaN/Inf values; "
                             f"LLM.int8() cannot quantize them")
        if x.numel():
            cols = outlier_columns(x, self.threshold) if math.isfinite(self.threshold) else np.empty(0, np.int64)
            self.hits[cols] += 1
            self.calls += 1
            self.tokens += x.numel() // x.shape[-1]
            self.max_columns = max(self.max_columns, int(cols.size))
        return llm_int8_matmul(x, self.w_hat, self.bias, self.threshold).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, threshold={self.threshold:g}"


def _check_config(config: LLMInt8Config) -> None:
    """LLM.int8() is int8 x int8 with per-row weight scales: any other format is refused."""
    if config.weights is None or config.weights != "int8":
        raise ValueError(f"LLM.int8() stores weights as int8 per output row (Linear8bitLt); weights={config.weights!r} "
                         f"cannot be used (for other weight formats see PTQConfig / AWQConfig / GPTQConfig)")
    w = config.weight_spec()
    opts = formats.get(w).options(**w.options)
    if opts["granularity"] != "channel" or not opts["symmetric"]:
        raise ValueError(f"LLM.int8() quantizes weights symmetrically per output row; weights={w.label()} "
                         f"(granularity={opts['granularity']!r}, symmetric={opts['symmetric']}) cannot be used")
    if config.activations != "int8" or config.activation_options:
        raise ValueError(f"LLM.int8() quantizes activations to symmetric int8 per token; activations="
                         f"{config.activations!r} {dict(config.activation_options) or ''} cannot be used")


def _linear_layers(model: ModelLike, config: LLMInt8Config) -> list[L.Layer]:
    layers = [la for la in L.find_layers(model, config.include, config.exclude) if isinstance(la.module, nn.Linear)]
    if not layers:
        raise ValueError("LLM.int8() replaces nn.Linear layers; include/exclude leave none (the model's "
                         "other layers are Conv)")
    return layers


def _replace(model: ModelLike, name: str, new: nn.Module) -> None:
    mod = torch_module(model)
    parent, _, attr = name.rpartition(".")
    setattr(mod.get_submodule(parent) if parent else mod, attr, new)


def quantize_llm_int8(model: ModelLike, config: LLMInt8Config, calibration: Any = None, batch_size: int = 32,
                      progress: bool = False) -> PipelineReport:
    """Replace every (included) ``nn.Linear`` by :class:`LLMInt8Linear` (``qlab.quantize_``).

    No calibration is needed (outliers are found per call). If ``calibration`` is given it is run
    once through the quantized model and the report's ``note`` per layer (and ``extra["outliers"]``)
    says how many outlier columns those tokens met; the counters are then reset, so
    :func:`outlier_report` afterwards describes only what runs next (e.g. the evaluation).
    """
    _check_config(config)
    L.check_model(model)
    layers = _linear_layers(model, config)
    data = batches(calibration, model, batch_size) if calibration is not None else None
    rows = []
    for la in layers:
        new = LLMInt8Linear(la.module, config.threshold, la.name)
        st = error_stats(la.module.weight.detach().float().numpy(), new.w_hat.numpy())
        out, inp = la.shape
        nbytes = out * inp + 4 * out  # Linear8bitLt: int8 codes (CB) + one float32 absmax per row (SCB)
        _replace(model, la.name, new)
        rows.append(L.layer_report(
            la, weights="int8 per row (fp16 weight)", nbytes=nbytes, sqnr_db=st["sqnr_db"], mse=st["mse"],
            max_abs_err=st["max_abs_err"], activations=f"int8 per token, |x|>={config.threshold:g} columns fp16",
        ))  # fmt: skip
    L.mark(model, config.label())
    report = PipelineReport(config.label(), rows, L.other_params(model, layers), config.to_dict(),
                            {"threshold": config.threshold})
    if data:
        feed(model, data, progress=progress, desc="LLM.int8 outliers")
        stats = {r["name"]: r for r in outlier_report(model)}
        for r in report.layers:
            s = stats[r.name]
            r.note = f"{s['columns']} outlier col(s) over {s['tokens']} tokens"
        report.extra["outliers"] = list(stats.values())
        report.extra["calibration_batches"] = len(data)
        reset_outlier_stats(model)
    return report


def llm_int8_modules(model: ModelLike) -> dict[str, LLMInt8Linear]:
    """``{name: module}`` of the :class:`LLMInt8Linear` layers of ``model``."""
    return {n: m for n, m in torch_module(model).named_modules() if isinstance(m, LLMInt8Linear)}


def outlier_report(model: ModelLike) -> list[dict[str, Any]]:
    """Per LLM.int8() layer, over every call since the last reset: ``columns`` (distinct input
    features that were outliers at least once), ``max_per_call``, ``calls``, ``tokens``, and the
    ``top`` columns (most often outliers, with their call counts)."""
    mods = llm_int8_modules(model)
    if not mods:
        raise ValueError("the model has no LLM.int8() layers; run qlab.quantize_(m, LLMInt8Config()) first")
    rows = []
    for name, m in mods.items():
        seen = np.flatnonzero(m.hits)
        top = seen[np.argsort(-m.hits[seen], kind="stable")][:5]
        rows.append({
            "name": name, "in_features": m.in_features, "columns": int(seen.size), "max_per_call": m.max_columns,
            "calls": m.calls, "tokens": m.tokens, "top": [(int(j), int(m.hits[j])) for j in top],
        })  # fmt: skip
    return rows


def reset_outlier_stats(model: ModelLike) -> None:
    """Zero every LLM.int8() layer's outlier counters."""
    for m in llm_int8_modules(model).values():
        m.reset_stats()


def _register() -> None:
    from .api import register_method

    register_method(LLMInt8Config, quantize_llm_int8)


_register()

__all__ = ["LLMInt8Linear", "llm_int8_matmul", "quantize_llm_int8", "llm_int8_modules", "outlier_report", "reset_outlier_stats"]
