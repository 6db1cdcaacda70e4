"""Integer vs floating-point 8-bit formats on real tensors (lesson 04).

:func:`linear_inputs` captures the real activations a model's Linear layers see (padding tokens
removed), and :func:`int_vs_float` quantizes a tensor with INT8 and the FP8 variants at the same
granularity (one absmax scale per tensor or per row), so the comparison is measured, not claimed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..core.model import Loaded
from ..quantize.recipes import torch_module
from .error import compare_formats

EIGHT_BIT = ("int8", "fp8_e4m3", "fp8_e5m2", "fp8_e3m4")


def linear_inputs(m: Loaded, names: Iterable[str], sentences: Sequence[str]) -> dict[str, np.ndarray]:
    """``{layer name: input activations (tokens, in_features) float32}`` of a sentence encoder's
    Linear layers for ``sentences`` (one forward pass; padding positions dropped)."""
    from ..core.calibration import tokenize

    mod = torch_module(m)
    batch = tokenize(m, list(sentences))
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for n in names:
        layer = mod.get_submodule(n)
        hooks.append(layer.register_forward_hook(lambda _m, inp, _o, n=n: seen.__setitem__(n, inp[0].detach())))
    try:
        with torch.no_grad():
            mod(**batch)
    finally:
        for h in hooks:
            h.remove()
    keep = batch["attention_mask"].bool()
    return {n: seen[n][keep].float().numpy() for n in names}


def int_vs_float(x: Any, granularity: str = "tensor", names: Sequence[str] = EIGHT_BIT) -> list[dict[str, Any]]:
    """SQNR, bytes and max error of each 8-bit format on ``x`` with one absmax scale per
    ``granularity`` ("tensor" or "channel" = per row); plus ``absmax_over_std`` of ``x``."""
    x32 = np.asarray(x, np.float32)
    ratio = float(np.abs(x32).max() / x32.std()) if x32.std() > 0 else float("inf")
    rows = compare_formats(x32, list(names), granularity=granularity)
    return [{**r, "granularity": granularity, "absmax_over_std": ratio} for r in rows]


__all__ = ["EIGHT_BIT", "linear_inputs", "int_vs_float"]
