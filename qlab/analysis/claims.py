"""Claims from the course texts, measured: the computations of lesson 15 ("Claims and measurements").

Course material states figures ("Q4_0 gives about 75% size reduction", "GPTQ: 4-bit, 75-80%
smaller, under 2% accuracy loss", "pruning removes 30-50% of parameters while keeping
performance" ...). Each function here measures one of them with qlab on the real models, and
:func:`verdict` turns a claimed range and a measured value into one of :data:`VERDICTS`, with the
tolerance stated. The lesson prints the figures and the verdicts; nothing in it is typed by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .. import formats
from ..core.model import ModelLike, torch_module

VERDICTS = ("holds", "partly holds", "does not hold", "not measured here")


@dataclass(frozen=True)
class Claim:
    """One claim, what was measured, and the verdict (one of :data:`VERDICTS`)."""

    claim: str
    measured: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


def verdict(measured: float, low: float, high: float | None = None, *, tol: float = 0.0) -> str:
    """``"holds"`` when ``measured`` lies in the claimed range ``[low, high]`` (a single figure when
    ``high`` is None) widened by ``tol`` on each side, ``"partly holds"`` within twice that, else
    ``"does not hold"``. ``tol`` is absolute, in the unit of the figure ("about 75%": tol=0.05)."""
    for name, v in (("measured", measured), ("low", low), ("tol", tol)):
        if not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    hi = low if high is None else high
    if hi < low or tol < 0:
        raise ValueError(f"need low <= high and tol >= 0, got low={low}, high={hi}, tol={tol}")
    gap = max(low - measured, measured - hi, 0.0)
    if gap <= tol:
        return "holds"
    return "partly holds" if gap <= 2 * tol else "does not hold"


# -- sizes -----------------------------------------------------------------------------------------
def size_rows(names: Sequence[str] = ("q8_0", "q5_1", "q4_0")) -> list[dict[str, Any]]:
    """Bits per weight of each format with its scales, and the size reduction it gives against
    FP16 and FP32 weights (``1 - bpw/16``, ``1 - bpw/32``)."""
    rows = []
    for n in names:
        bpw = formats.get(n).bits_per_weight
        if bpw is None:
            raise ValueError(f"format {n!r} has no fixed bits per weight")
        rows.append({"format": n, "bits_per_weight": bpw, "vs_fp16": 1 - bpw / 16, "vs_fp32": 1 - bpw / 32})
    return rows


def file_rows(cache_rows: Iterable[dict[str, Any]], names: Sequence[str] = ("q8_0", "q4_0")) -> list[dict[str, Any]]:
    """Whole-model sizes of a capstone sweep (``data/cache/capstone_*.json`` rows: ``format``, ``mb``):
    each format's size against the fp32 row and against half of it (the FP16 model)."""
    by = {r["format"]: r for r in cache_rows}
    if "f32" not in by:
        raise ValueError("the cache rows need the 'f32' reference row")
    f32 = by["f32"]["mb"]
    out = []
    for n in names:
        if n not in by:
            raise ValueError(f"no row for format {n!r}; rows: {', '.join(by)}")
        mb = by[n]["mb"]
        out.append({"format": n, "mb": mb, "fp32_mb": f32, "vs_fp16": 1 - mb / (f32 / 2), "vs_fp32": 1 - mb / f32})
    return out


# -- what IQ2/IQ3 and Q4_0_4_4/Q4_0_8_8 are ----------------------------------------------------------
# llama.cpp's repacked Q4_0 layouts (ggml/src/ggml-cpu/repack.h: ``block<4, N>`` holds the N fp16
# deltas of N Q4_0 blocks and their 32*N 4-bit quants, interleaved for SIMD dot products;
# static_assert(sizeof(block<4, 4>) == 4 * sizeof(ggml_half) + QK8_0 * 2)). GGUF files no longer
# carry them: llama.cpp repacks plain Q4_0 at load time.
REPACKED_Q4_0 = {"q4_0_4_4": 4, "q4_0_8_8": 8}


def repacked_rows() -> list[dict[str, Any]]:
    """Values and bytes per block of Q4_0 and of its repacked layouts (N interleaved blocks)."""
    q = formats.get("q4_0")
    rows = [{"type": "q4_0", "values": q.block_size, "bytes": q.bytes_per_block}]
    for name, n in REPACKED_Q4_0.items():
        rows.append({"type": name, "values": n * q.block_size, "bytes": n * 2 + n * q.block_size // 2})
    for r in rows:
        r["bits_per_weight"] = 8 * r["bytes"] / r["values"]
    return rows


def iq_rows(names: Sequence[str] = ("iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s")) -> list[dict[str, Any]]:
    """What the IQ types store: bits per weight, the codebook (grid) they pick points from, and
    whether llama.cpp requires an importance matrix for them."""
    from ..formats.gguf import iq_grids

    rows = []
    for n in names:
        f = formats.get(n)
        g = iq_grids.decoder_grid(n)
        rows.append({"format": n, "bits_per_weight": f.bits_per_weight, "grid_points": g.shape[0],
                     "values_per_point": g.shape[1], "requires_imatrix": bool(getattr(f, "requires_imatrix", False))})  # fmt: skip
    return rows


# -- GPTQ on an encoder: layer-wise, with the float model's inputs ------------------------------------
def linear_hessians(model: ModelLike, batches: Sequence[dict[str, torch.Tensor]], include: str = "*encoder.layer.*") -> dict[str, torch.Tensor]:
    """``H = 2 X^T X / n`` (float64) of every Linear matching ``include``, from the float model's
    inputs over ``batches`` (padding tokens left out through the attention mask)."""
    mod = torch_module(model)
    mods = dict(mod.named_modules())
    lins = {n: mods[n] for n in _linear_names(model, include)}
    if not lins:
        raise ValueError(f"no Linear layer matches include={include!r}")
    sums = {n: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for n, m in lins.items()}
    counts = dict.fromkeys(lins, 0)
    mask: list[torch.Tensor] = []

    def hook(name: str) -> Any:
        def f(_m: Any, inp: tuple[torch.Tensor, ...], _o: Any) -> None:
            x = inp[0].detach()
            x = x[mask[0].bool()] if x.dim() == 3 else x
            x = x.reshape(-1, x.shape[-1]).double()
            sums[name] += x.T @ x
            counts[name] += x.shape[0]

        return f

    handles = [m.register_forward_hook(hook(n)) for n, m in lins.items()]
    try:
        with torch.no_grad():
            for b in batches:
                mask[:] = [b["attention_mask"]]
                mod(**b)
    finally:
        for h in handles:
            h.remove()
    return {n: 2 * sums[n] / max(counts[n], 1) for n in lins}


def gptq_layerwise(model: ModelLike, hessians: dict[str, torch.Tensor], bits: int = 4, group_size: int = 32) -> dict[str, Any]:
    """GPTQ (:func:`qlab.quantize.gptq.gptq_quantize`) of each Linear in ``hessians``, in place,
    asymmetric ``int<bits>`` with groups of ``group_size``. The Hessians come from the *float*
    model (one pass), unlike the paper's block-by-block order; returns weight bytes before/after."""
    from ..quantize.gptq import encoded, gptq_quantize, int_grid
    from ..quantize.recipes import spec

    grid = int_grid(spec((f"int{bits}", {"granularity": "group", "group_size": group_size, "symmetric": False})))
    mods = dict(torch_module(model).named_modules())
    fp32 = quant = 0
    for name, h in hessians.items():
        lin = mods[name]
        res = gptq_quantize(lin.weight.detach().float(), h, grid)
        with torch.no_grad():
            lin.weight.copy_(res.weight)
        fp32 += 4 * lin.weight.numel()
        quant += encoded(res, grid).nbytes
    return {"layers": len(hessians), "fp32_bytes": fp32, "bytes": quant, "bits_per_weight": 32 * quant / fp32}


# -- pruning, then quantization -------------------------------------------------------------------
PRUNE_INCLUDE = {"digits-cnn": "fc*", "minilm-l6": "*encoder.layer.*", "smollm2-135m": "*layers.*"}


def quality(m: Any, sentences: Sequence[str] | None = None) -> dict[str, float]:
    """The capstone's quality figure of a model kind: digits accuracy; MiniLM cosine and top-10
    overlap against the fp32 encoder over ``sentences`` (default: 256 WikiText-2 sentences)."""
    from .. import eval as qeval

    if m.kind == "image-classifier":
        return {"accuracy": qeval.accuracy(m)}
    if m.kind == "sentence-encoder":
        r = qeval.embedding_similarity(m, sentences=list(sentences or qeval.wikitext_sentences(256)), k=10)
        return {"cosine_mean": r["cosine_mean"], "top10_overlap": r["top10_overlap"]}
    raise ValueError(f"quality() measures image classifiers and sentence encoders, not a {m.kind} ({m.name})")


def pruning_row(name: str, n: int, m: int, scoring: str = "magnitude", fmt: Any = None) -> dict[str, Any]:
    """Load ``name`` fresh, prune its Linear layers (:data:`PRUNE_INCLUDE`) to ``n:m`` with
    ``scoring``, quantize the kept values and every other weight (convolutions, embeddings) with
    ``fmt`` (None: all fp32), and measure size and :func:`quality`. ``n = m``: not pruned."""
    from ..models import load
    from ..quantize.sparsity import sparsify_model

    if name not in PRUNE_INCLUDE:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(PRUNE_INCLUDE)}")
    model = load(name, progress=False)
    if n == m:
        from ..quantize.model import quantize_model

        rep: Any = quantize_model(model, fmt if fmt is not None else "f32")
        sparsity = 0.0
    else:
        rep = sparsify_model(model, scoring, fmt, n=n, m=m, include=PRUNE_INCLUDE[name], dense="same")
        sparsity = rep.sparsity
    label = "f32" if fmt is None else formats.get(fmt).name
    return {"model": name, "pattern": f"{n}:{m}", "scoring": scoring if n != m else "-", "format": label,
            "pruned": sparsity, "bytes": rep.total_bytes, "fp32_bytes": rep.fp32_bytes,
            "smaller": rep.fp32_bytes / rep.total_bytes, **quality(model)}  # fmt: skip


def gptq_encoder_row(name: str = "minilm-l6", bits: int = 4, group_size: int = 32, method: str = "gptq",
                     n_batches: int = 4) -> dict[str, Any]:
    """Weight-only ``int<bits>`` (groups of ``group_size``, zero-point) of an encoder's Linear layers
    by layer-wise GPTQ (:func:`gptq_layerwise`, Hessians from ``n_batches`` calibration batches of
    32 sentences) or round-to-nearest (``method="rtn"``), with size and :func:`quality`."""
    from ..core.calibration import example_batches
    from ..models import load
    from ..quantize.model import quantize_model

    if method not in ("gptq", "rtn"):
        raise ValueError(f"method must be 'gptq' or 'rtn', got {method!r}")
    model = load(name, progress=False)
    if model.kind != "sentence-encoder":
        raise ValueError(f"gptq_encoder_row measures sentence encoders; {name} is a {model.kind}")
    opts = {"granularity": "group", "group_size": group_size, "symmetric": False}
    include = PRUNE_INCLUDE[name]
    if method == "gptq":
        hess = linear_hessians(model, example_batches(model, 32 * n_batches), include)
        r = gptq_layerwise(model, hess, bits, group_size)
    else:
        rep = quantize_model(model, (f"int{bits}", opts), include=include)
        q = [la for la in rep.layers if la.name in set(_linear_names(model, include))]
        r = {"bytes": sum(la.nbytes for la in q), "fp32_bytes": 4 * sum(la.params for la in q)}
    total = 4 * sum(p.numel() for p in torch_module(model).parameters())
    q_bytes = total - r["fp32_bytes"] + r["bytes"]  # every other parameter stays fp32
    return {"model": name, "method": method, "bits": bits, "group_size": group_size,
            "layer_bpw": 32 * r["bytes"] / r["fp32_bytes"], "bytes": q_bytes, "fp32_bytes": total,
            **quality(model)}  # fmt: skip


def _linear_names(model: ModelLike, include: str) -> list[str]:
    from fnmatch import fnmatchcase

    return [n for n, m in torch_module(model).named_modules() if isinstance(m, torch.nn.Linear) and fnmatchcase(n, include)]


__all__ = ["VERDICTS", "Claim", "verdict", "size_rows", "file_rows", "REPACKED_Q4_0", "repacked_rows", "iq_rows",
           "linear_hessians", "gptq_layerwise",
           "PRUNE_INCLUDE", "quality", "pruning_row", "gptq_encoder_row"]  # fmt: skip
