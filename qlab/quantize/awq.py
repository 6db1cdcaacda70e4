"""AWQ (Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan, Han, 2024, "AWQ: Activation-aware
Weight Quantization for LLM Compression and Acceleration", arXiv:2306.00978).

A few input channels carry much larger activations than the rest; their weights matter most.
AWQ multiplies each input channel ``j`` of a Linear by ``s_j > 1`` where activations are large
(so its weights use more of the grid) and divides the layer's input by ``s_j``, which is free:
``1/s`` is folded into the operation that produces the input (an RMSNorm's weight, or the rows of
the previous Linear), so the model stays a plain float model -- only its Linear weights change,
and they lie on the format's grid:

    Y = X W^T = (X / s) (W * s)^T    ->    Y_q = (X / s) Q(W * s)^T

``s = mean|x|^alpha`` (normalised by ``sqrt(max s * min s)``), with ``alpha`` searched on the grid
``0, 1/n_grid, ..., (n_grid-1)/n_grid`` for the least output error; ``alpha = 0`` is ``s = 1``,
plain round-to-nearest, so the search can never do worse than RTN in its own objective. Scale
groups, as the reference (``mit-han-lab/llm-awq``, ``awq/quantize/auto_scale.py``
``auto_scale_block``) does for LLaMA blocks:

* ``q/k/v_proj`` together, ``1/s`` folded into ``input_layernorm``;
* ``gate/up_proj`` together, into ``post_attention_layernorm``;
* ``down_proj``, into the rows of ``up_proj``;
* ``o_proj``, into the rows of ``v_proj``, only when their shapes match (not with grouped-query
  attention such as SmolLM2's, where the reference skips it too).

Then the reference's weight clipping (``auto_clip.py``): per output row and scale group, the
range is shrunk to ``max|w| * (1 - k/20)``, ``k < 10``, where that lowers the output error
(not for ``q/k_proj``, whose error the attention product amplifies).

Objective. The reference measures the mean squared error of the scaled sub-module's output on a
token sample. Here the error of the affected *Linear outputs* is computed exactly over all
calibration tokens from the input Gram matrix ``G = X^T X / n`` (:mod:`.blockwise`):
``mean ||X E^T||^2 = trace(E G E^T) / rows`` with ``E = W - Q(W * s) / s``, a few GEMMs of the
weight's size instead of ``n_grid`` forward passes (the differences to the reference: q/k/v and
gate/up are judged by their own outputs, not by the attention / MLP outputs behind them).

Every format of :mod:`qlab.formats` works (the weights are quantized by ``roundtrip``); integers
default to the papers' asymmetric grid (``symmetric=False``). Like both AWQ references, the next
block is calibrated on the float outputs of this one.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from .. import formats
from ..core.model import ModelLike
from . import _layers as L
from . import blockwise as B
from ._report import LayerQuant, PipelineReport
from .gptq import check_weight_only, layer_row, select_layers
from .llm_configs import AWQConfig
from .recipes import Spec

#: (operation producing the input, the Linears reading it) of a LLaMA-style block
SCALE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("self_attn.v_proj", ("self_attn.o_proj",)),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    ("mlp.up_proj", ("mlp.down_proj",)),
)
NO_CLIP = ("self_attn.q_proj", "self_attn.k_proj")
MAX_SHRINK = 0.5


def roundtrip(w: torch.Tensor, spec: Spec) -> torch.Tensor:
    """``decode(encode(w))`` with ``spec``'s format and options (rows = output channels)."""
    return torch.from_numpy(formats.roundtrip(w.detach().float().numpy(), spec, **spec.options))


def awq_scales(abs_mean: torch.Tensor, alpha: float) -> torch.Tensor:
    """``s = mean|x|^alpha`` clamped at 1e-4 and divided by ``sqrt(max s * min s)`` (reference)."""
    s = abs_mean.float().pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


def output_error(e: torch.Tensor, gram: torch.Tensor) -> float:
    """Mean squared output error ``trace(E G E^T) / rows`` of a weight error ``E`` (rows, in)
    on inputs with Gram matrix ``G = X^T X / n``: ``mean over tokens and rows of (X E^T)^2``."""
    return float(((e.double() @ gram.double()) * e.double()).sum() / e.shape[0])


def search_scale(
    w: torch.Tensor, gram: torch.Tensor, abs_mean: torch.Tensor, spec: Spec, n_grid: int = 20
) -> tuple[torch.Tensor, float, list[float]]:
    """The grid search: ``(best s, its alpha, output error of every alpha)``; ``losses[0]`` is RTN."""
    losses = []
    best = (float("inf"), 0.0, torch.ones_like(abs_mean))
    for k in range(n_grid):
        alpha = k / n_grid
        s = awq_scales(abs_mean, alpha)
        q = roundtrip(w * s, spec) / s
        loss = output_error(w - q, gram)
        losses.append(loss)
        if loss < best[0]:
            best = (loss, alpha, s)
    return best[2], best[1], losses


def clip_group(spec: Spec, cols: int) -> int:
    """Values sharing one scale along a row: the clipping search works per such group."""
    fmt = formats.get(spec)
    o = fmt.options(**spec.options)
    if o.get("granularity") == "group":
        return int(o["group_size"])
    if o.get("granularity") in ("channel", "tensor"):
        return cols
    if "block_size" in o:
        return int(o["block_size"])
    bs = fmt.layout(**o).block_size
    return bs if cols % bs == 0 else cols


def search_clip(w: torch.Tensor, gram: torch.Tensor, spec: Spec, n_grid: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip each (row, group) of ``w`` at ``max|w| * (1 - k/n_grid)``, ``k < MAX_SHRINK * n_grid``,
    choosing per group the ``k`` whose quantized group has the least output error on its own
    inputs (``e_g^T G_gg e_g``, the reference's per-group objective). Returns ``(clipped w, shrink)``."""
    rows, cols = w.shape
    gs = clip_group(spec, cols)
    ng = cols // gs
    wg = w.view(rows, ng, gs)
    blocks = torch.stack([gram[g * gs : (g + 1) * gs, g * gs : (g + 1) * gs] for g in range(ng)]).double()
    amax = wg.abs().amax(-1, keepdim=True)
    best_err = torch.full((rows, ng), float("inf"), dtype=torch.float64)
    best_w = wg.clone()
    best_shrink = torch.ones(rows, ng)
    for k in range(int(MAX_SHRINK * n_grid)):
        shrink = 1 - k / n_grid
        m = amax * shrink
        wc = torch.maximum(torch.minimum(wg, m), -m)
        e = (wg - roundtrip(wc.reshape(rows, cols), spec).view(rows, ng, gs)).double()
        err = torch.einsum("rgi,gij,rgj->rg", e, blocks, e)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_w = torch.where(better[..., None], wc, best_w)
        best_shrink = torch.where(better, torch.tensor(shrink), best_shrink)
    return best_w.reshape(rows, cols), best_shrink


def fold_scale(prev: nn.Module, consumers: list[nn.Linear], s: torch.Tensor) -> None:
    """Divide ``prev``'s output channels by ``s`` and multiply the consumers' input columns by
    ``s``: the float function of the block is unchanged (up to float32 rounding)."""
    with torch.no_grad():
        if isinstance(prev, nn.Linear):
            prev.weight[-len(s) :].div_(s[:, None].to(prev.weight.dtype))
            if prev.bias is not None:
                prev.bias[-len(s) :].div_(s.to(prev.bias.dtype))
        elif getattr(prev, "weight", None) is not None and prev.weight.shape == s.shape:  # RMSNorm / LayerNorm
            prev.weight.div_(s.to(prev.weight.dtype))
            if getattr(prev, "bias", None) is not None:
                prev.bias.div_(s.to(prev.bias.dtype))
        else:
            raise ValueError(f"cannot fold AWQ scales into {type(prev).__name__}")
        for c in consumers:
            c.weight.mul_(s[None, :].to(c.weight.dtype))


def scale_groups(block: nn.Module, chosen: set[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The :data:`SCALE_GROUPS` that apply to ``block`` (all consumers chosen; shapes that allow)."""
    mods = dict(block.named_modules())
    if not all(p in mods for p, _ in SCALE_GROUPS) or not all(n in mods for _, ns in SCALE_GROUPS for n in ns):
        raise ValueError(
            f"AWQ's scale groups follow LLaMA-style blocks (input_layernorm, self_attn.q/k/v/o_proj, "
            f"post_attention_layernorm, mlp.gate/up/down_proj); {type(block).__name__} is not one"
        )
    if "pre_feedforward_layernorm" in mods:  # Gemma: the MLP reads pre_feedforward_layernorm, norms are x * (1 + w)
        raise ValueError(
            f"AWQ cannot fold scales into {type(block).__name__}: Gemma-style blocks (pre_feedforward_layernorm, "
            f"RMSNorm x * (1 + w)) are not LLaMA-style; use GPTQ or weight-only quantization for them"
        )
    out = []
    for prev, names in SCALE_GROUPS:
        if not all(n in chosen for n in names):
            continue
        p = mods[prev]
        if isinstance(p, nn.Linear) and p.weight.shape[0] != mods[names[0]].weight.shape[1]:
            continue  # v_proj -> o_proj under grouped-query attention
        out.append((prev, names))
    return out


def awq_block(block: nn.Module, stats: dict[str, B.InputStats], chosen: set[str], spec: Spec, n_grid: int, clip: bool) -> dict[str, dict[str, Any]]:
    """Search and fold the scales of one block, clip, quantize its chosen Linears in place.
    Returns per layer ``{"nbytes", "ref", "alpha", "losses", "shrink"}`` (``ref``: the scaled float
    weight before clipping and rounding)."""
    mods = dict(block.named_modules())
    info: dict[str, dict[str, Any]] = {n: {} for n in chosen}
    found = []
    for prev, names in scale_groups(block, chosen):  # all searches on the float block, then fold
        w = torch.cat([mods[n].weight.detach().float() for n in names])
        st = stats[names[0]]
        s, alpha, losses = search_scale(w, st.gram, st.abs_mean, spec, n_grid)
        found.append((prev, names, s))
        for n in names:
            info[n].update(alpha=alpha, losses=losses)
    in_scale: dict[str, torch.Tensor] = {}
    for prev, names, s in found:
        fold_scale(mods[prev], [mods[n] for n in names], s)
        in_scale.update(dict.fromkeys(names, s))
    fmt = formats.get(spec)
    for n in chosen:
        m = mods[n]
        w = m.weight.detach().float()
        info[n]["ref"] = w.clone()  # the scaled float weight: what the quantized one approximates
        if clip and n not in NO_CLIP:
            g = stats[n].gram
            if n in in_scale:  # the layer now reads X / s
                s = in_scale[n]
                g = g / (s[:, None] * s[None, :])
            w, shrink = search_clip(w, g, spec, n_grid)
            info[n]["shrink"] = float(shrink.mean())
        enc = fmt.encode(w.numpy(), **spec.options)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(fmt.decode(enc)).to(m.weight.dtype))
        info[n]["nbytes"] = enc.nbytes
    return info


def run_awq(model: ModelLike, config: AWQConfig, calibration: Any = None, batch_size: int = 8) -> PipelineReport:
    """AWQ on every decoder-block Linear of a LLaMA-style LLM, calibrated on ``calibration`` text
    (what ``qlab.quantize_`` runs for an :class:`AWQConfig`); the model is modified in place."""
    if not isinstance(config, AWQConfig):
        raise TypeError(f"run_awq takes an AWQConfig, got {type(config).__name__}")
    from tqdm.auto import tqdm

    spec = check_weight_only(config, "AWQ")
    prefix, blocks, layers = select_layers(model, config)
    L.check_model(model)
    L.check_rows(layers, spec, None)
    for block in blocks[:1]:
        scale_groups(block, set())  # a non-LLaMA block fails here, before anything runs
    ids = B.calibration_ids(model, calibration, config.n_samples, config.seq_len)
    t0 = time.perf_counter()
    by_name = {la.name: la for la in layers}
    rows: dict[str, LayerQuant] = {}
    alphas: dict[str, float] = {}
    inputs = B.first_block_inputs(model, ids, batch_size)
    last = max(int(n[len(prefix) + 1 :].split(".")[0]) for n in by_name)  # no need to run blocks after it
    for i, block in enumerate(tqdm(blocks[: last + 1], desc="AWQ", disable=not config.progress, leave=False)):
        chosen = {n for n in B.linears(block) if f"{prefix}.{i}.{n}" in by_name}
        if not chosen:
            inputs = B.run_block(block, inputs)
            continue
        stats, outputs = B.collect(block, B.linears(block, chosen.__contains__), inputs)
        info = awq_block(block, stats, chosen, spec, config.n_grid, config.clip)
        for n, d in info.items():
            name = f"{prefix}.{i}.{n}"
            note = f"awq alpha={d['alpha']:.2f}" if "alpha" in d else "awq (no scale group)"
            if "shrink" in d:
                note += f", clip {d['shrink']:.3f}"
            rows[name] = layer_row(by_name[name], d["ref"], spec, d["nbytes"], note)
            if "alpha" in d:
                alphas[name] = d["alpha"]
        inputs = outputs  # float outputs of the block (the AWQ references do the same)
    seconds = time.perf_counter() - t0
    L.mark(model, config.label())
    extra = {"calibration_windows": int(ids.shape[0]), "seq_len": int(ids.shape[1]),
             "calibration_tokens": int(ids.numel()), "seconds": seconds, "alpha": alphas}  # fmt: skip
    return PipelineReport(config.label(), [rows[la.name] for la in layers], L.other_params(model, layers),
                          config.to_dict(), extra)  # fmt: skip


def _register() -> None:
    from .api import register_method

    register_method(AWQConfig, run_awq)


_register()

__all__ = [
    "SCALE_GROUPS", "roundtrip", "awq_scales", "output_error", "search_scale", "clip_group", "search_clip",
    "fold_scale", "scale_groups", "awq_block", "run_awq",
]  # fmt: skip
