"""Per-layer weight statistics: what a weight tensor looks like to a quantizer.

For every Linear / Embedding / Conv weight (tied weights once): range, standard deviation,
excess kurtosis, the fraction of outliers ``|w| > k * std`` and the per-channel maxima. A
quantizer with one scale per block or channel spends its levels on the largest magnitude it
sees, so heavy tails (kurtosis well above 0, the Gaussian value) and a few channels with a large
maximum are what make a tensor hard to quantize.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from ..core.model import ModelLike
from ..core.report import format_table
from ..formats.base import as_float32
from ..quantize.recipes import targets


def tensor_stats(w: Any, k: float = 3.0) -> dict[str, Any]:
    """Statistics of one weight tensor (rows = output channels, the last axes = one row).

    Keys: ``min``, ``max``, ``absmax``, ``mean``, ``std`` (population), ``kurtosis`` (excess:
    E[(w-mean)^4] / std^4 - 3, 0 for a Gaussian), ``outlier_fraction`` (share of ``|w| > k*std``),
    ``channel_absmax`` (max |w| per output channel, array), ``input_channel_absmax`` (per input
    column, array) and ``channel_ratio`` (largest / median channel maximum).
    """
    x = as_float32(w)
    x2 = x.reshape(x.shape[0], -1) if x.ndim >= 2 else x.reshape(1, -1)
    flat = x2.ravel()
    n = flat.size
    if n == 0:
        raise ValueError("tensor_stats needs a non-empty tensor")
    mean = float(np.einsum("i->", flat, dtype=np.float64)) / n
    c = flat - np.float32(mean)
    c2 = c * c
    var = float(np.einsum("i->", c2, dtype=np.float64)) / n
    m4 = float(np.einsum("i,i->", c2, c2, dtype=np.float64)) / n
    std = var**0.5
    a = np.abs(x2)
    rows = a.max(axis=1)
    med = float(np.median(rows))
    return {
        "min": float(flat.min()),
        "max": float(flat.max()),
        "absmax": float(rows.max()),
        "mean": mean,
        "std": std,
        "kurtosis": m4 / var**2 - 3.0 if var > 0 else float("nan"),
        "outlier_fraction": float(np.count_nonzero(a > k * std)) / n,
        "channel_absmax": rows,
        "input_channel_absmax": a.max(axis=0),
        "channel_ratio": float(rows.max()) / med if med > 0 else float("inf"),
    }


def weight_stats(
    model: ModelLike, k: float = 3.0, include: str | Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """:func:`tensor_stats` of every weight target of ``model`` (``include``: fnmatch patterns),
    one dict per tensor with ``name``, ``shape`` and ``params`` added."""
    pats = [include] if isinstance(include, str) else None if include is None else list(include)
    out = []
    for t in targets(model):
        if pats is not None and not any(t.matches(p) for p in pats):
            continue
        out.append({"name": t.name, "shape": t.shape, "params": t.numel, **tensor_stats(t.weight.detach(), k)})
    return out


def weight_table(stats: list[dict[str, Any]], k: float | None = None) -> str:
    """The scalar columns of :func:`weight_stats` as a text table."""
    cols = [
        ("name", "tensor", None), ("shape", "shape", None), ("min", "min", ".4f"), ("max", "max", ".4f"),
        ("std", "std", ".4f"), ("kurtosis", "kurtosis", ".2f"),
        ("outlier_fraction", f"|w|>{k or 'k'}std %", ".3f"), ("channel_ratio", "max/median ch", ".2f"),
    ]  # fmt: skip
    rows = [{**s, "shape": "x".join(map(str, s["shape"])), "outlier_fraction": 100 * s["outlier_fraction"]} for s in stats]
    return format_table(rows, cols)


def select(stats: list[dict[str, Any]], pattern: str) -> list[dict[str, Any]]:
    """The rows whose tensor name matches the fnmatch ``pattern``."""
    return [s for s in stats if fnmatchcase(s["name"], pattern)]


__all__ = ["tensor_stats", "weight_stats", "weight_table", "select"]
