"""SmoothQuant: migrate activation outliers into the weights, then W8A8.

Xiao et al., 2023, "SmoothQuant: Accurate and Efficient Post-Training Quantization for Large
Language Models" (arXiv:2211.10438), section 4. A Linear computes ``Y = X W^T``; for any positive
per-input-channel vector ``s``, ``Y = (X diag(1/s)) (W diag(s))^T`` exactly. With

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)        (eq. 4; max over tokens / output rows)

the smoothed activation channel ``j`` has maximum ``max|X_j|^(1-alpha) max|W_j|^(1-alpha)``: big
activation channels shrink, the matching weight columns grow, and ``alpha`` sets how much of the
quantization difficulty moves (0.5 balances them). ``1/s`` is folded into the operation that
produces ``X``, so smoothing costs nothing at run time:

* ``input_layernorm`` (RMSNorm weight) -> ``q_proj``, ``k_proj``, ``v_proj`` (one ``s`` shared,
  weight maxima over the three);
* ``post_attention_layernorm`` -> ``gate_proj``, ``up_proj``;
* ``up_proj`` (its output rows) -> ``down_proj``: ``down_proj``'s input is ``act(gate) * up``, which
  is linear in ``up``'s output channel. ``o_proj`` is not smoothed: ``v_proj`` has fewer output
  channels than ``o_proj`` has inputs under grouped-query attention (SmolLM2: 192 vs 576).

The reference code is ``smooth_ln_fcs`` of mit-han-lab/smoothquant (``smooth.py``); as there, both
maxima are clamped at ``1e-5``. Activation maxima are calibrated on the calibration text (never the
evaluation text: use :func:`qlab.eval.calibration_text`), then the smoothed model is quantized by
qlab's own pipelines: static per-tensor/per-channel activations by :mod:`.ptq` (observer of the
config, calibrated again on the smoothed model), per-token activations by :mod:`.dynamic`.

    rep = qlab.quantize_(m, SmoothQuantConfig(weights="int8", activations="int8", alpha=0.5),
                         calibration=qlab.eval.calibration_text())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.model import ModelLike
from . import _layers as L
from ._report import PipelineReport
from .calibration import batches, feed
from .configs import DynamicConfig, PTQConfig, SmoothQuantConfig
from .fakequant import kind
from .recipes import torch_module

CLAMP = 1e-5  # smooth_ln_fcs: act_scales and weight maxima clamped from below


@dataclass(frozen=True)
class SmoothGroup:
    """Linears that read the same input, and the module whose output (scaled by ``1/s``) it is:
    an RMSNorm/LayerNorm (``prev`` is a norm) or a Linear (its output rows are scaled)."""

    prev: str
    linears: tuple[str, ...]


def smooth_groups(model: ModelLike) -> list[SmoothGroup]:
    """The foldable (producer, consumers) pairs of a Llama-style decoder (see the module docstring)."""
    mod = torch_module(model)
    names = dict(mod.named_modules())
    groups = []
    for name, sub in names.items():
        attn, mlp = getattr(sub, "self_attn", None), getattr(sub, "mlp", None)
        if attn is None or mlp is None:
            continue
        p = f"{name}." if name else ""
        qkv = tuple(f"{p}self_attn.{n}_proj" for n in "qkv")
        if hasattr(sub, "input_layernorm") and all(n in names for n in qkv):
            groups.append(SmoothGroup(f"{p}input_layernorm", qkv))
        gu = (f"{p}mlp.gate_proj", f"{p}mlp.up_proj")
        if hasattr(sub, "post_attention_layernorm") and all(n in names for n in gu):
            groups.append(SmoothGroup(f"{p}post_attention_layernorm", gu))
        if f"{p}mlp.down_proj" in names and f"{p}mlp.up_proj" in names:
            groups.append(SmoothGroup(f"{p}mlp.up_proj", (f"{p}mlp.down_proj",)))
    if not groups:
        raise ValueError(
            f"{type(mod).__name__} has no norm -> Linear (or up_proj -> down_proj) pair to fold SmoothQuant's "
            f"scales into; SmoothQuant needs a Llama-style decoder (input_layernorm, self_attn.q/k/v_proj, "
            f"post_attention_layernorm, mlp.gate/up/down_proj)"
        )
    return groups


def smoothing_factors(act_absmax: Any, weights: Any, alpha: float) -> torch.Tensor:
    """``s_j = max|X_j|^alpha / max_i|W_ij|^(1-alpha)`` (eq. 4), ``weights``: one ``(out, in)`` matrix
    or a list of them sharing the input (maximum over all their rows); maxima clamped at 1e-5."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    a = torch.as_tensor(act_absmax, dtype=torch.float32)
    ws = [weights] if isinstance(weights, torch.Tensor | np.ndarray) else list(weights)
    wmax = torch.stack([torch.as_tensor(w, dtype=torch.float32).abs().amax(0) for w in ws]).amax(0)
    if a.shape != wmax.shape:
        raise ValueError(f"activation maxima have {tuple(a.shape)} channels, the weights {tuple(wmax.shape)} inputs")
    if not bool(torch.isfinite(a).all()):
        raise ValueError("activation maxima contain NaN/Inf: the calibration activations are not finite")
    return (a.clamp(min=CLAMP).pow(alpha) / wmax.clamp(min=CLAMP).pow(1 - alpha)).clamp(min=CLAMP)


def activation_absmax(model: ModelLike, data: list[Any], names: list[str], progress: bool = False) -> dict[str, torch.Tensor]:
    """Per-input-channel ``max |x|`` of the named Linear layers over every calibration batch."""
    mod = torch_module(model)
    out: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def fn(_m: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            amax = x.reshape(-1, x.shape[-1]).abs().amax(0).float()
            if not bool(torch.isfinite(amax).all()):
                raise ValueError(f"{name}: calibration activation has NaN/Inf values; SmoothQuant cannot smooth them")
            out[name] = amax if name not in out else torch.maximum(out[name], amax)
        return fn

    handles = [mod.get_submodule(n).register_forward_pre_hook(hook(n)) for n in names]
    try:
        feed(model, data, progress, desc="SmoothQuant act scales")
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in out]
    if missing:
        raise ValueError(f"layer(s) {', '.join(missing)} never ran during calibration")
    return out


@torch.no_grad()
def smooth_(model: ModelLike, act_absmax: dict[str, torch.Tensor], alpha: float,
            groups: list[SmoothGroup] | None = None) -> dict[str, torch.Tensor]:
    """Fold SmoothQuant's scales into ``model`` (in place; the float function is unchanged):
    ``prev`` divided by ``s``, each Linear's input columns multiplied by ``s``. ``act_absmax`` is
    keyed by the group's first Linear. Returns ``{first linear: s}``."""
    mod = torch_module(model)
    groups = smooth_groups(model) if groups is None else groups
    scales = {}
    for g in groups:
        lins = [mod.get_submodule(n) for n in g.linears]
        s = smoothing_factors(act_absmax[g.linears[0]], [lin.weight.detach() for lin in lins], alpha)
        prev = mod.get_submodule(g.prev)
        if isinstance(prev, nn.Linear):  # scale its output rows (and bias)
            prev.weight.div_(s.to(prev.weight.dtype)[:, None])
            if prev.bias is not None:
                prev.bias.div_(s.to(prev.bias.dtype))
        else:  # a norm: y = w * norm(x) (+ b)
            prev.weight.div_(s.to(prev.weight.dtype))
            if getattr(prev, "bias", None) is not None:
                prev.bias.div_(s.to(prev.bias.dtype))
        for lin in lins:
            lin.weight.mul_(s.to(lin.weight.dtype)[None, :])
        scales[g.linears[0]] = s
    return scales


def _check_config(config: SmoothQuantConfig) -> None:
    if config.weights is None:
        raise ValueError("SmoothQuant moves activation outliers into the weights and quantizes both (W8A8); "
                         "weights=None keeps them float -- use PTQConfig(weights=None) for activation-only")
    if config.activations is None:
        raise ValueError("SmoothQuant smooths activations for their quantization; activations=None (weight-only) "
                         "has nothing to smooth -- use AWQConfig / GPTQConfig for weight-only")
    w, a = config.weight_spec(), config.activation_spec()
    if kind(w) != "ranged":
        raise ValueError(f"SmoothQuant needs weights with one scale per output channel or tensor (int8, fp8, ...); "
                         f"weights={w.label()} scale each block of a row themselves, which the per-channel "
                         f"migration argument does not apply to")
    if kind(a) != "ranged":
        raise ValueError(f"SmoothQuant needs activations with a per-tensor/per-token scale (int8, fp8, ...); "
                         f"activations={a.label()} cannot be used")


def quantize_smoothquant(model: ModelLike, config: SmoothQuantConfig, calibration: Any = None,
                         calibration_tokens: int = 8192, batch_size: int = 32, progress: bool = False) -> PipelineReport:
    """Calibrate activation maxima, smooth, then W8A8 (``qlab.quantize_``). ``calibration``: text
    (windows of 512 tokens) or batches; whole batches are taken until they hold ``calibration_tokens``
    tokens (default 16 x 512), for both the smoothing maxima and the static activation ranges.
    ``activation_granularity="token"`` quantizes activations dynamically per token (no ranges)."""
    _check_config(config)
    if calibration is None:
        raise ValueError("SmoothQuant needs calibration data for the activation maxima (calibration=... in "
                         "quantize_, e.g. qlab.eval.calibration_text())")
    L.check_model(model)
    layers = L.find_layers(model, config.include, config.exclude)
    chosen = {la.name for la in layers}
    groups = [g for g in smooth_groups(model) if all(n in chosen for n in g.linears)]
    data = _take_tokens(batches(calibration, model, batch_size), calibration_tokens)
    act = activation_absmax(model, data, [g.linears[0] for g in groups], progress)
    scales = smooth_(model, act, config.alpha, groups)
    common = dict(weights=config.weights, activations=config.activations, group_size=config.group_size,
                  weight_granularity=config.weight_granularity, weight_options=config.weight_options,
                  activation_options=config.activation_options, include=config.include, exclude=config.exclude)
    if config.activation_granularity == "token":
        from .dynamic import quantize_dynamic

        report = quantize_dynamic(model, DynamicConfig(**common, granularity="token"), data[:1])
    else:
        from .ptq import quantize_ptq

        ptq = PTQConfig(**common, observer=config.observer, activation_granularity=config.activation_granularity,
                        progress=progress)
        report = quantize_ptq(model, ptq, data, batch_size)
    L.mark(model, config.label())
    note = {n: s for g in groups for n, s in zip(g.linears, [scales[g.linears[0]]] * len(g.linears), strict=True)}
    for r in report.layers:
        if r.name in note:
            s = note[r.name]
            r.note = f"smoothed, s in [{float(s.min()):.3g}, {float(s.max()):.3g}]"
    gran = "" if config.activation_granularity == "tensor" else f", per {config.activation_granularity}"
    report.method = config.label() + f" (alpha={config.alpha:g}{gran})"
    report.config = config.to_dict()
    report.extra.update({
        "alpha": config.alpha, "smoothed_groups": len(groups), "calibration_tokens": _n_tokens(data),
        "act_absmax_before": {n: float(a.max()) for n, a in act.items()},
        "act_absmax_after": {n: float((act[n] / scales[n]).max()) for n in act},
    })  # fmt: skip
    return report


def _n_tokens(data: list[Any]) -> int:
    return sum(int(b["input_ids"].numel()) if isinstance(b, dict) else int(b.shape[0]) for b in data)


def _take_tokens(data: list[Any], tokens: int) -> list[Any]:
    if tokens <= 0:
        raise ValueError(f"calibration_tokens must be positive, got {tokens!r}")
    out, n = [], 0
    for b in data:
        if n >= tokens:
            break
        out.append(b)
        n += int(b["input_ids"].numel()) if isinstance(b, dict) and "input_ids" in b else len(b)
    return out


def _register() -> None:
    from .api import register_method

    register_method(SmoothQuantConfig, quantize_smoothquant)


_register()

__all__ = [
    "SmoothGroup", "smooth_groups", "smoothing_factors", "activation_absmax", "smooth_", "quantize_smoothquant", "CLAMP",
]  # fmt: skip
