"""Where NormalFloat4's 16 levels come from (lesson 05).

QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", arXiv:2305.14314,
appendix E) builds NF4 from quantiles of the standard normal N(0, 1): 8 positive levels at the
quantiles of ``linspace(offset, 0.5, 9)[:-1]`` and 7 negative ones at ``linspace(offset, 0.5, 8)[:-1]``
(asymmetric, so that 0 is a level exactly), plus 0, all divided by the largest. ``offset = 0.9677083``
is bitsandbytes' choice (``create_normal_map``): the mean of the 1 - 1/(2*15) and 1 - 1/(2*16)
quantile positions, so the outermost levels are not the infinite tails.

:func:`nf4_levels` reproduces bitsandbytes' float32 table bit for bit (the tests compare it with
:data:`qlab.formats.codebook.NF4_CODE` and with bitsandbytes' own ``get_4bit_type("nf4")``): the
quantile positions are float32 (``torch.linspace``'s default dtype), the quantiles float64
(``torch.special.ndtri``, the inverse normal CDF, as SciPy's ``norm.ppf``), the division float32.
"""

from __future__ import annotations

import numpy as np
import torch

NF4_OFFSET = 0.9677083


def nf4_levels(offset: float = NF4_OFFSET) -> np.ndarray:
    """The 16 NormalFloat4 levels (float32, sorted) for quantile ``offset`` in (0.5, 1)."""
    if not isinstance(offset, int | float) or not 0.5 < offset < 1:
        raise ValueError(f"offset must be a number in (0.5, 1), got {offset!r}")

    def quantiles(n: int) -> torch.Tensor:
        return torch.special.ndtri(torch.linspace(offset, 0.5, n)[:-1].double())

    v = torch.cat([quantiles(9), torch.zeros(1, dtype=torch.float64), -quantiles(8)]).float()
    v = v.sort().values
    return (v / v.max()).numpy()


def level_usage(x: np.ndarray, levels: np.ndarray, block: int = 64) -> np.ndarray:
    """How often each level is the nearest one to ``x / absmax`` of its block of ``block`` values
    (bitsandbytes' blockwise absmax scaling): a histogram over the levels, summing to 1."""
    x = np.asarray(x, np.float32).ravel()
    if x.size % block:
        raise ValueError(f"x has {x.size} values, not a multiple of block={block}")
    b = x.reshape(-1, block)
    amax = np.abs(b).max(axis=1, keepdims=True)
    y = (b / np.where(amax > 0, amax, 1)).ravel()
    idx = np.abs(y[:, None] - np.asarray(levels, np.float32)[None, :]).argmin(axis=1)
    return np.bincount(idx, minlength=len(levels)) / idx.size


__all__ = ["NF4_OFFSET", "nf4_levels", "level_usage"]
