"""Compare real backends on one model: bytes on disk / in memory, accuracy, latency ratio.

Every backend package (:mod:`qlab.backends.torch_native`, :mod:`qlab.backends.onnxruntime`,
:mod:`qlab.backends.bitsandbytes`) returns a :class:`BackendModel`: the quantized model *running
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

import io
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

BACKENDS = ("torch_native", "onnxruntime", "bitsandbytes")


@dataclass
class BackendModel:
    """A model quantized by, and running on, a real backend.

    ``loaded.model`` executes on the backend (for ONNX Runtime an adapter module around the
    ``InferenceSession``); attribute access falls through to ``loaded``, so ``qlab.eval``
    functions and ``.evaluate()`` take this object directly.
    """

    backend: str
    scheme: str
    loaded: Any
    weight_bytes: int
    disk_bytes: int
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        if name == "loaded":  # during copy/unpickling, before __init__ ran
            raise AttributeError(name)
        return getattr(self.loaded, name)

    @property
    def label(self) -> str:
        return f"{self.backend}: {self.scheme}"

    def __repr__(self) -> str:
        return f"BackendModel({self.label!r}, {self.loaded.name!r}, weight_bytes={self.weight_bytes:,})"


def state_bytes(module: torch.nn.Module) -> int:
    """Bytes of every tensor in ``module.state_dict()`` (shared storages counted once).

    Quantized tensors count their integer codes plus their scales/zero-points (float32 + int32
    per channel, or one pair per tensor); torch.ao's packed-parameter tuples are unpacked.
    """
    seen: set[tuple[int, int]] = set()

    def count(v: Any) -> int:
        if isinstance(v, tuple | list):
            return sum(count(x) for x in v)
        if not isinstance(v, torch.Tensor):
            return 0
        if v.is_quantized:
            per_channel = v.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
            return v.numel() * v.int_repr().element_size() + 8 * (v.q_per_channel_scales().numel() if per_channel else 1)
        key = (v.untyped_storage().data_ptr(), v.storage_offset()) if v.numel() else (id(v), 0)
        if key in seen:
            return 0
        seen.add(key)
        return v.numel() * v.element_size()

    return sum(count(v) for v in module.state_dict().values())


def saved_bytes(module: torch.nn.Module) -> int:
    """Size of ``torch.save(module.state_dict())``."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes


def float_model(m: Any) -> BackendModel:
    """The float32 PyTorch model itself, as the reference row."""
    return BackendModel("torch", "fp32 (reference)", m, state_bytes(m.model), saved_bytes(m.model))


# ----------------------------------------------------------------------------------------- inputs
CALIBRATION_OFFSET = 2000  # calibration sentences start here: qlab.eval uses the first 1000
LM_WINDOW = 128  # tokens per causal-LM example window


def batches(m: Any, n: int = 128, batch_size: int = 32, split: str = "calibration") -> list[Any]:
    """Real input batches for ``m``: ``split="calibration"`` (digits train images; WikiText-2
    sentences disjoint from the evaluation sentences; for a causal LM, token windows from the
    second half of WikiText-2 test) or ``"eval"`` (digits test images; the evaluation sentences;
    windows from the start of the text). Sentence-encoder batches are tokenizer dicts of int64
    tensors (``input_ids``, ``attention_mask``, ``token_type_ids``) padded to the longest
    sentence; causal-LM batches are ``(batch, 128)`` token-id tensors.
    """
    if split not in ("calibration", "eval"):
        raise ValueError(f"split must be 'calibration' or 'eval', got {split!r}")
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"n and batch_size must be positive, got n={n}, batch_size={batch_size}")
    if m.kind == "image-classifier":
        from ..models.digits import load_split

        x, _ = load_split("train" if split == "calibration" else "test")
        return list(x[:n].split(batch_size))
    if m.kind == "sentence-encoder":
        from ..eval import wikitext_sentences

        start = CALIBRATION_OFFSET if split == "calibration" else 0
        text = wikitext_sentences(start + n)[start:]
        return [tokenize(m, text[i : i + batch_size]) for i in range(0, n, batch_size)]
    if m.kind == "causal-lm":  # n windows of LM_WINDOW tokens (calibration: from the second half of the text)
        from ..eval import wikitext2_test

        text = wikitext2_test()
        text = text[len(text) // 2 :] if split == "calibration" else text
        ids = m.tokenizer(text[: 8 * n * LM_WINDOW], return_tensors="pt")["input_ids"][0]
        if ids.numel() < n * LM_WINDOW:
            raise ValueError(f"not enough text for {n} windows of {LM_WINDOW} tokens")
        return list(ids[: n * LM_WINDOW].view(n, LM_WINDOW).split(batch_size))
    raise ValueError(f"no example batches for a {m.kind} model ({m.name}); pass input batches explicitly")


def tokenize(m: Any, sentences: Sequence[str]) -> dict[str, torch.Tensor]:
    """A padded tokenizer batch for a sentence encoder (truncated at its max sequence length)."""
    max_len = m.config.get("max_seq_length") or 256
    enc = m.tokenizer(list(sentences), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def run_batch(model: Any, batch: Any) -> Any:
    """One forward call on a batch as :func:`batches` makes them."""
    return model(**batch) if isinstance(batch, dict) else model(batch)


# ---------------------------------------------------------------------------------------- latency
def measure_latency(
    fns: dict[str, Callable[[], Any]], repeat: int = 20, warmup: int = 2, threads: int | None = None
) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin (one call of each per round).

    ``threads``: torch's intra-op thread count while timing (ONNX Runtime sessions take theirs
    when created; :func:`compare` re-creates them with the same count).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    old = torch.get_num_threads()
    torch.set_num_threads(threads or old)
    try:
        with torch.inference_mode():
            for r in range(warmup + repeat):
                for k, f in fns.items():
                    t = time.perf_counter()
                    f()
                    if r >= warmup:
                        times[k].append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------------------- tables
def default_metrics(m: Any, n_sentences: int = 256) -> Callable[[Any], dict[str, float]]:
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
        from ..quantize._table import format_table

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
    m: Any,
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


def backend_models(m: Any, backend: str = "all", calibration: Sequence[Any] | None = None) -> list[BackendModel]:
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
    colors = {"torch": "0.55", "torch_native": "C0", "onnxruntime": "C1", "bitsandbytes": "C2"}
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
        fig.savefig(path, dpi=120)
    return fig


__all__ = ["BACKENDS", "BackendModel", "BackendTable", "backend_models", "backend_table", "batches", "compare",
           "default_metrics", "float_model", "measure_latency", "plot_backends", "run_batch", "saved_bytes",
           "state_bytes", "tokenize"]
