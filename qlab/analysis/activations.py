"""Activation capture with forward hooks: per-channel magnitudes and the LLM's outlier channels.

``capture_activations(m)`` runs a calibration batch (by default the first 256 WikiText-2 tokens)
and records, for every Linear layer's **input** and every transformer block's **output** (the
residual stream), the per-channel maximum and mean of |x| and the per-token maximum.

LLMs carry a few *massive activations* (Sun et al., 2024, "Massive Activations in Large Language
Models"; Dettmers et al., 2022, "LLM.int8()"): a handful of residual-stream channels, on a few
tokens such as the first, reach values hundreds to thousands of times the median. In SmolLM2-135M
channel 507 reaches about 25,000 on the first token from block 12 on (median channel ~50). One
such value sets the scale of a whole per-tensor or per-token activation quantizer, which is why
weight-only formats are the easy case and activation quantization needs outlier handling.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.model import Loaded
from ..quantize.recipes import targets, torch_module

BLOCK_PATTERN = r"(?:.*\.)?(?:layers|layer|h|blocks)\.\d+"


@dataclass
class ChannelStats:
    """Magnitudes of one activation tensor over the calibration tokens (last axis = channel)."""

    absmax: np.ndarray  # [channels] max |x| per channel
    mean_abs: np.ndarray  # [channels] mean |x| per channel
    token_absmax: np.ndarray  # [tokens] max |x| per token position (over channels)

    @property
    def tokens(self) -> int:
        return int(self.token_absmax.size)

    def outliers(self, k: float = 20.0) -> list[tuple[int, float, float]]:
        """Channels whose max |x| exceeds ``k`` x the median channel maximum:
        ``(channel, max |x|, ratio)``, largest first."""
        med = float(np.median(self.absmax))
        ratio = self.absmax / med if med > 0 else np.full_like(self.absmax, np.inf)
        idx = np.flatnonzero(ratio > k)
        idx = idx[np.argsort(-self.absmax[idx], kind="stable")]
        return [(int(i), float(self.absmax[i]), float(ratio[i])) for i in idx]


def _stats(x: torch.Tensor) -> ChannelStats:
    a = x.detach().float().reshape(-1, x.shape[-1]).abs()
    return ChannelStats(a.amax(0).numpy(), a.mean(0).numpy(), a.amax(1).numpy())


def _inputs(m: Loaded, inputs: Any, text: str | None, tokens: int) -> Any:
    if inputs is not None:
        return inputs
    from ..core.lm import token_windows

    return token_windows(m, text, tokens, 1)


def _run(mod: torch.nn.Module, inputs: Any) -> None:
    with torch.inference_mode():
        if isinstance(inputs, dict):
            mod(**inputs)
        elif isinstance(inputs, torch.Tensor) and inputs.dtype == torch.long and hasattr(mod, "config"):
            mod(input_ids=inputs, use_cache=False)  # a transformers model
        else:
            mod(inputs)


def capture_activations(
    m: Loaded,
    inputs: Any = None,
    *,
    text: str | None = None,
    tokens: int = 256,
    linear_inputs: bool = True,
    blocks: str | None = BLOCK_PATTERN,
    include: str | Iterable[str] | None = None,
) -> dict[str, ChannelStats]:
    """Per-channel activation statistics of one forward pass of ``m``.

    ``inputs``: what the module is called with (a tensor, or a dict of keyword arguments);
    default: the first ``tokens`` tokens of ``text`` (WikiText-2) for a causal LM. Keys of the
    result: ``"<module>:input"`` for each Linear layer's input (``include``: fnmatch patterns
    to restrict them) and ``"<module>:output"`` for modules whose name fully matches the regex
    ``blocks`` (transformer blocks: the residual stream after each block).
    """
    mod = torch_module(m)
    data = _inputs(m, inputs, text, tokens)
    out: dict[str, ChannelStats] = {}
    hooks = []
    pats = [include] if isinstance(include, str) else include
    if linear_inputs:
        for t in targets(mod):
            if isinstance(t.module, torch.nn.Linear) and (pats is None or any(t.matches(p) for p in pats)):
                hooks.append(t.module.register_forward_pre_hook(
                    lambda _m, args, name=t.name: out.__setitem__(f"{name}:input", _stats(args[0]))))  # fmt: skip
    if blocks:
        rx = re.compile(blocks)
        for name, sub in mod.named_modules():
            if name and rx.fullmatch(name):
                hooks.append(sub.register_forward_hook(
                    lambda _m, _a, o, name=name: out.__setitem__(
                        f"{name}:output", _stats(o[0] if isinstance(o, tuple | list) else o))))  # fmt: skip
    try:
        _run(mod, data)
    finally:
        for h in hooks:
            h.remove()
    return out


def residual_outliers(acts: dict[str, ChannelStats], k: float = 20.0) -> list[dict[str, Any]]:
    """For every block output: the outlier channels (``k`` x median), their size and the token
    positions holding the largest values -- the massive activations table of the lesson."""
    rows = []
    for name, s in acts.items():
        if name.endswith(":output"):
            top = s.outliers(k)
            rows.append({
                "name": name.removesuffix(":output"),
                "median": float(np.median(s.absmax)),
                "channels": [c for c, _, _ in top],
                "max": top[0][1] if top else float(s.absmax.max()),
                "ratio": top[0][2] if top else 1.0,
                "token": int(np.argmax(s.token_absmax)),
            })  # fmt: skip
    return rows


def compare_activations(ref: dict[str, ChannelStats], other: dict[str, ChannelStats]) -> list[dict[str, Any]]:
    """How quantization moved each captured activation: relative change of the per-channel
    mean |x| (L2 over channels) and of the largest channel maximum."""
    rows = []
    for name, a in ref.items():
        b = other.get(name)
        if b is None:
            continue
        den = float(np.linalg.norm(a.mean_abs)) or 1.0
        rows.append({
            "name": name,
            "mean_abs_rel_change": float(np.linalg.norm(b.mean_abs - a.mean_abs)) / den,
            "absmax_ref": float(a.absmax.max()),
            "absmax": float(b.absmax.max()),
        })  # fmt: skip
    return rows


__all__ = ["ChannelStats", "capture_activations", "residual_outliers", "compare_activations", "BLOCK_PATTERN"]
