"""The size-vs-accuracy sweep of :func:`qlab.sweep`, measured inside llama.cpp.

Each recipe is written as a GGUF file with qlab's encoders (:func:`.export_gguf`; the bytes are
those of llama.cpp's own quantizer) and run by llama.cpp on the very tokens of qlab's float
reference: perplexity, KL(float || llama.cpp) and top-1 agreement, the figures
``llama-perplexity --kl-divergence`` reports. This is ``qlab compare --backend llamacpp``.

The figures differ from the simulated sweep by one thing (see the llama.cpp cross-check tests):
llama.cpp rounds every matmul input to 8 bits (Q8_0 / Q8_K blocks) inside its quantized dot
products, so its perplexity is a little higher than qlab's weight-only simulation.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...core.model import Loaded
from ...quantize.model import recipe_label
from ...quantize.recipes import torch_module
from .export import export_gguf
from .recipe import resolve_types
from .run import kl_report


def sweep(
    m: Loaded,
    formats: Sequence[Any] | Mapping[str, Any],
    metric: str = "kl",
    *,
    text: str | None = None,
    window: int = 512,
    windows: int = 16,
    directory: str | Path | None = None,
    progress: bool = True,
    protocol: str = "full-window",
    reports: dict[str, Any] | None = None,
    **llama_kwargs: Any,
) -> Any:
    """Export ``m`` once per recipe and measure each file in llama.cpp; return a ``SweepResult``.

    ``formats``: recipes with a GGML type for every tensor (``q8_0``, ``q4_k``, ``q4_k_m``, ``f16``,
    ...); a format llama.cpp cannot store (``nf4``, ``int4``, ``fp8_e4m3``) raises ``ValueError``
    before any work. ``directory``: where the GGUF files go (default: a temporary directory,
    removed afterwards). Rows: ``bits_per_weight`` and ``mb`` of the written tensors and file,
    ``perplexity``, ``kl``, ``top1``, ``seconds`` (export + evaluation); ``rows[0]`` is qlab's
    float model, the reference all KL values are measured against. ``protocol``: the perplexity
    protocol (``"full-window"`` or ``"llama-perplexity"``); ``reports``: a dict that receives each
    format's :class:`~qlab.core.klreport.KLReport` (llama.cpp vs qlab's float model) by label.
    """
    from tqdm.auto import tqdm

    from ...analysis.sweep import LM_COLUMNS, SweepResult
    from ...eval import reference

    if getattr(m, "kind", None) != "causal-lm":
        raise ValueError(f"the llama.cpp backend runs causal LMs; {getattr(m, 'name', m)!r} is not one")
    if metric not in ("kl", "perplexity", "top1"):
        raise ValueError(f"metric must be 'kl', 'perplexity' or 'top1', got {metric!r}")
    labelled = list(formats.items()) if isinstance(formats, Mapping) else [(recipe_label(f), f) for f in formats]
    if not labelled:
        raise ValueError("give at least one format")
    for label, recipe in labelled:  # fail before the expensive reference run
        try:
            resolve_types(m, recipe)
        except ValueError as e:
            raise ValueError(f"{label}: llama.cpp cannot run this recipe: {e}") from None

    t0 = time.perf_counter()
    ref = reference(m, text, window, windows, progress=progress, protocol=protocol)
    n_params = sum(p.numel() for p in torch_module(m).parameters())
    rows: list[dict[str, Any]] = [{
        "format": "f32 (reference)", "reference": True, "bits_per_weight": 32.0, "mb": 4 * n_params / 1e6,
        "perplexity": ref.perplexity, "kl": 0.0, "top1": 1.0, "seconds": time.perf_counter() - t0,
    }]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="qlab-gguf-") as tmp:
        folder = Path(directory) if directory is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        bar = tqdm(labelled, desc="llama.cpp", disable=not progress)
        for label, recipe in bar:
            bar.set_postfix_str(label)
            t0 = time.perf_counter()
            rep = export_gguf(m, folder / f"{m.name}-{_slug(label)}.gguf", recipe)
            report = kl_report(rep.path, ref, **llama_kwargs)
            if reports is not None:
                reports[label] = report
            got = report.metrics()
            rows.append({
                "format": label, "bits_per_weight": rep.bits_per_weight, "mb": rep.file_bytes / 1e6,
                "fallbacks": len(rep.fallbacks), **{k: got[k] for k in LM_COLUMNS if k in got}, "seconds": time.perf_counter() - t0,
                "file": str(rep.path),
            })  # fmt: skip
    params = {"window": window, "windows": windows, **({"protocol": protocol} if protocol != "full-window" else {})}
    return SweepResult(rows, metric, f"{m.name} in llama.cpp", params)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)


__all__ = ["sweep"]
