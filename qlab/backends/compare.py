"""Compare real backends on one model: bytes on disk / in memory, accuracy, latency ratio.

Every backend package (:mod:`qlab.backends.torch_native`, :mod:`qlab.backends.onnxruntime`,
:mod:`qlab.backends.bitsandbytes`, :mod:`qlab.backends.openvino`) returns a :class:`BackendModel`: the quantized model *running
on that runtime*, wrapped so that :mod:`qlab.eval` works on it unchanged (it has the ``name``,
``kind``, ``model``, ``tokenizer`` and ``config`` of a :class:`qlab.models.LoadedModel`), plus the
bytes it takes.

* ``weight_bytes`` -- bytes of the weights the runtime holds (parameters, buffers, packed
  quantized weights with their scales, ONNX initializers). Not process RSS, which mixes in
  allocator and framework overheads that do not depend on the scheme.
* ``disk_bytes`` -- size of the serialized artifact (``torch.save`` of the state dict, or the
  ``.onnx`` file).

:func:`compare` evaluates each model and times it against the float model **in the same run**,
round-robin (one call of each model per round, median over rounds), so CPU frequency changes and
other load hit every row alike and the *ratio* is meaningful even on a busy machine.
:func:`backend_table` builds the standard rows for a zoo model (what ``qlab compare --backend``
prints) and :func:`plot_backends` draws the table as bar charts for the lessons.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.calibration import CALIBRATION_OFFSET, LM_WINDOW, example_batches, run_batch, tokenize
from ..core.latency import measure_latency
from ..core.model import Loaded
from ..core.report import format_table
from ..files import save_figure
from .model import BackendModel, float_model, saved_bytes, state_bytes

batches = example_batches  # the name the lessons use

BACKENDS = ("torch_native", "onnxruntime", "bitsandbytes", "openvino")


# ----------------------------------------------------------------------------------------- tables
def default_metrics(m: Loaded, n_sentences: int = 256) -> Callable[[Any], dict[str, float]]:
    """The accuracy metric of a model kind: digits accuracy; MiniLM cosine / top-10 retrieval
    overlap with the fp32 model; SmolLM2 perplexity (4 windows of 512 tokens)."""
    from .. import eval as qeval

    if m.kind == "image-classifier":
        return lambda b: {"accuracy": qeval.accuracy(b)}
    if m.kind == "sentence-encoder":
        sentences = qeval.wikitext_sentences(n_sentences)

        def emb(b: Any) -> dict[str, float]:
            r = qeval.embedding_similarity(b, sentences=sentences, k=10)
            return {"cosine_mean": r["cosine_mean"], "top10_overlap": r["top10_overlap"]}

        return emb
    return lambda b: {"perplexity": qeval.perplexity(b, windows=4, progress=False)}


@dataclass
class BackendTable:
    """Rows of :func:`compare`: one dict per model (``backend``, ``scheme``, ``disk_bytes``,
    ``weight_bytes``, the metric columns, ``latency_ms``, ``latency_ratio``)."""

    model: str
    metrics: list[str]
    rows: list[dict[str, Any]]
    batch_size: int

    def table(self) -> str:
        cols = [("backend", "backend", None), ("scheme", "scheme", None),
                ("disk_mb", "disk MB", ".3f"), ("weight_mb", "memory MB", ".3f")]
        cols += [(k, k, ".4f") for k in self.metrics]
        cols += [("latency_ms", f"ms/batch{self.batch_size}", ".2f"), ("latency_ratio", "x float", ".2f")]
        rows = [r | {"disk_mb": r["disk_bytes"] / 1e6, "weight_mb": r["weight_bytes"] / 1e6} for r in self.rows]
        return format_table(rows, cols)

    def plot(self, **kw: Any) -> Any:
        return plot_backends(self, **kw)

    def __str__(self) -> str:
        return f"{self.model} (latency ratio: to the float PyTorch model, same run)\n{self.table()}"


def compare(
    m: Loaded,
    models: Sequence[BackendModel],
    metrics: Callable[[Any], dict[str, float]] | None = None,
    batch: Any = None,
    batch_size: int = 32,
    repeat: int = 20,
    threads: int | None = None,
) -> BackendTable:
    """Evaluate every backend model and time it against the float model in the same run.

    ``m``: the float :class:`qlab.models.LoadedModel` (its row is added first); ``batch``: the
    timing input (default: the first evaluation batch of ``batch_size``); ``threads``: CPU
    threads for every runtime while timing (default: torch's current count). On a machine
    shared with other work, ``threads=1`` gives the steadiest ratios.
    """
    if not models:
        raise ValueError("compare needs at least one backend model")
    metrics = metrics or default_metrics(m)
    ref = float_model(m)
    allm = [ref, *models]
    if threads:
        for b in allm:
            if hasattr(b.model, "session") and b.path is not None:
                from .onnxruntime.export import session

                b.model.session = session(b.path, threads)
            elif hasattr(b.model, "recompile"):  # OpenVINO: a CompiledModel with that many threads
                b.model.recompile(threads)
    batch = batches(m, batch_size, batch_size, "eval")[0] if batch is None else batch
    fns = {str(i): (lambda b=b: run_batch(b.model, batch)) for i, b in enumerate(allm)}
    lat = measure_latency(fns, repeat, threads=threads)
    rows = []
    for i, b in enumerate(allm):
        with torch.inference_mode():
            vals = metrics(b)
        rows.append({"backend": b.backend, "scheme": b.scheme, "disk_bytes": b.disk_bytes,
                     "weight_bytes": b.weight_bytes, **vals, "latency_ms": 1e3 * lat[str(i)],
                     "latency_ratio": lat[str(i)] / lat["0"]})
    names = [k for k in rows[0] if k not in ("backend", "scheme", "disk_bytes", "weight_bytes", "latency_ms",
                                             "latency_ratio")]
    return BackendTable(m.name, names, rows, batch_size)


def backend_models(m: Loaded, backend: str = "all", calibration: Sequence[Any] | None = None) -> list[BackendModel]:
    """The standard quantized variants of ``m`` on one backend (or ``"all"``) -- the rows of
    :func:`backend_table`. Calibration defaults to 4 batches of :func:`batches`."""
    if backend != "all" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} or 'all'")
    from . import bitsandbytes as bnb_backend
    from . import onnxruntime as ort_backend
    from . import torch_native

    calib = list(calibration) if calibration is not None else None
    if calib is None and m.kind in ("image-classifier", "sentence-encoder"):
        calib = batches(m, 128, 32, "calibration")
    out: list[BackendModel] = []
    want = BACKENDS if backend == "all" else (backend,)
    if m.kind not in ort_backend.KINDS:  # no ONNX export for LLMs here
        if backend == "onnxruntime":
            raise ValueError(f"onnxruntime backend: exporting a {m.kind} ({m.name}) is not supported; "
                             f"it supports {', '.join(ort_backend.KINDS)}")
        want = tuple(b for b in want if b != "onnxruntime")
    image = m.kind == "image-classifier"
    if "torch_native" in want:
        if image:
            out.append(torch_native.quantize_static(m, calib))
        out.append(torch_native.quantize_dynamic(m))
    if "onnxruntime" in want:
        out.append(ort_backend.float_session(m))
        out.append(ort_backend.quantize_dynamic(m))
        methods = ort_backend.CALIBRATION_METHODS if image else ("minmax",)
        out += [ort_backend.quantize_static(m, calib, method=k) for k in methods]
        if not image:  # digits' Linear layers export as Gemm, which MatMulNBits does not cover
            out.append(ort_backend.quantize_weight_only(m, "int4", block_size=32))
    if "bitsandbytes" in want:
        out += [bnb_backend.quantize(m, w) for w in ("int8", "nf4", "fp4")]
    if "openvino" in want:
        out += openvino_models(m, calib)
    return out


def openvino_models(m: Loaded, calibration: Sequence[Any] | None = None) -> list[BackendModel]:
    """The OpenVINO rows: the float IR (f32, and bf16 = OpenVINO's default on CPUs with AMX /
    AVX512-BF16), NNCF static int8 (digits-cnn, MiniLM), NNCF weight compression int8 and int4
    (MiniLM, SmolLM2; int4 in groups of 32, SmolLM2's 576 inputs having no 128-group), int4 with
    AWQ. NNCF's scale estimation is left out: on MiniLM it gave cosine -0.03 (measured, NNCF 3.4)."""
    from . import openvino as ovb

    out = [ovb.float_model(m), ovb.float_model(m, "bf16")]
    if m.kind in ("image-classifier", "sentence-encoder"):
        out.append(ovb.quantize_static(m, calibration if calibration is not None else batches(m, 128, 32, "calibration")))
    if m.kind in ("sentence-encoder", "causal-lm"):
        cal = calibration if calibration is not None else (
            batches(m, 32, 1, "calibration") if m.kind == "causal-lm" else batches(m, 128, 32, "calibration"))
        out.append(ovb.compress_weights(m, "int8_asym"))
        out += [ovb.compress_weights(m, mode, 32) for mode in ("int4_sym", "int4_asym")]
        out.append(ovb.compress_weights(m, "int4_asym", 32, calibration=cal, awq=True))
    return out


def backend_table(
    model: str | Any = "minilm-l6", backend: str = "all", batch_size: int = 32, repeat: int = 20, **kw: Any
) -> BackendTable:
    """The backend comparison table of a zoo model (``qlab compare --backend`` prints this)."""
    from ..models import load

    m = load(model, progress=False) if isinstance(model, str | Path) else model
    return compare(m, backend_models(m, backend), batch_size=batch_size, repeat=repeat, **kw)


def plot_backends(
    table: BackendTable | Sequence[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
) -> Any:
    """Horizontal bar charts, one panel per column (default: disk MB, the first accuracy metric,
    ``latency_ratio`` = latency / float model), one bar per backend/scheme. Returns the figure."""
    import matplotlib.pyplot as plt

    rows = list(getattr(table, "rows", table))
    if not rows:
        raise ValueError("no rows to plot")
    acc = list(getattr(table, "metrics", []))[:1]
    metrics = list(metrics) if metrics else ["disk_bytes", *acc, "latency_ratio"]
    labels = [f"{r['backend']}: {r['scheme']}" for r in rows]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.38 * len(rows) + 1.4), sharey=True)
    axes = [axes] if len(metrics) == 1 else list(axes)
    colors = {"torch": "0.55", "torch_native": "C0", "onnxruntime": "C1", "bitsandbytes": "C2", "openvino": "C4"}
    for ax, key in zip(axes, metrics, strict=True):
        vals = [float(r[key]) / (1e6 if key.endswith("bytes") else 1) for r in rows]
        ax.barh(range(len(rows)), vals, color=[colors.get(r["backend"], "C3") for r in rows])
        if key == "latency_ratio":  # log scale when the ratios span more than 10x
            ax.axvline(1.0, color="k", lw=0.8, ls="--")
            ax.set_xscale("log" if max(vals) > 10 * min(vals) > 0 else "linear")
        elif not key.endswith("bytes"):  # accuracy-like: zoom on the spread
            lo, hi = min(vals), max(vals)
            ax.set_xlim(max(0.0, lo - 0.25 * (hi - lo) - 0.005), hi + 0.05 * (hi - lo) + 0.001)
        ax.set_xlabel({"disk_bytes": "MB on disk", "weight_bytes": "MB in memory"}.get(key, key))
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), labels)
    fig.suptitle(title or f"{getattr(table, 'model', 'model')}: real backends")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=120)  # temp file + rename: a failed save keeps the old plot
    return fig


__all__ = ["BACKENDS", "CALIBRATION_OFFSET", "LM_WINDOW", "BackendModel", "BackendTable", "backend_models", "backend_table", "batches", "compare",
           "default_metrics", "float_model", "measure_latency", "openvino_models", "plot_backends", "run_batch", "saved_bytes",
           "state_bytes", "tokenize"]
