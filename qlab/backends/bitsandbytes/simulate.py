"""qlab's simulations of bitsandbytes' ``Linear8bitLt`` and ``Linear4bit``.

4-bit: qlab's ``nf4`` / ``fp4_bnb`` formats are bit-exact with bitsandbytes' CPU quantizer
(:mod:`qlab.formats.codebook`), ``double_quant=True`` being ``compress_statistics``. A
``Linear4bit`` computing in float32 is therefore ``F.linear(x, roundtrip(w, "nf4", ...), b)``
up to float32 summation order.

LLM.int8() (bitsandbytes 0.50, default/CPU kernels), step by step, with qlab's ``int8``
(symmetric, ``[-127, 127]``, ``granularity="channel"`` = one scale per row):

1. the weight is rounded to float16 and quantized per output row (``SCB = max|w|``);
2. the input is rounded to float16; entries with ``|x| >= threshold`` are set to 0 *before*
   the per-token absmax is taken, and the codes of every column holding such an entry are 0;
3. int8 x int8 -> int32, rescaled by ``SCA * SCB * 6.200124e-05`` -- bitsandbytes' constant for
   ``1 / 127**2`` (which is ``6.2000124e-05``: the literal differs by 1.8e-5 relative), + bias;
4. the outlier columns of the *original* float32 input times the dequantized weight columns
   (``CB * SCB / 127``) are added in float32.

qlab's ``int8`` computes ``rint(x * (1 / (max / 127)))`` where bitsandbytes computes
``round(x * (127 / max))``: the two roundings can differ by one code at near-ties, so the
simulation matches to about 1e-4 relative, not bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.fakequant import replace_linears
from ...core.llm_int8 import BNB_INV_127_SQ, int8_weight, llm_int8_linear, outlier_columns
from ...formats import roundtrip
from .linear import BACKEND, FORMATS


def four_bit_weight(w: np.ndarray, weights: str = "nf4", block_size: int = 64, double_quant: bool = True) -> np.ndarray:
    """The weight ``Linear4bit`` multiplies with: qlab's ``nf4`` / ``fp4_bnb`` codec, whose blocks
    follow rows (bitsandbytes cuts them from the flattened weight: the same blocks when a row
    holds whole blocks, the only case :mod:`.linear` quantizes)."""
    fmt = "fp4_bnb" if weights == "fp4" else weights
    return roundtrip(w, fmt, block_size=block_size, double_quant=double_quant)


class _SimLinear(nn.Module):
    def __init__(self, lin: nn.Linear, weights: str, threshold: float, block_size: int, double_quant: bool) -> None:
        super().__init__()
        self.weights, self.threshold = weights, threshold
        w = lin.weight.detach().float()
        if weights != "int8":
            w = torch.from_numpy(four_bit_weight(w.numpy(), weights, block_size, double_quant))
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = None if lin.bias is None else nn.Parameter(lin.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights == "int8":
            return llm_int8_linear(x, self.weight, self.bias, self.threshold)
        return nn.functional.linear(x, self.weight, self.bias)


def simulate(
    m: Any, weights: str = "nf4", threshold: float = 6.0, block_size: int = 64, compress_statistics: bool = True,
) -> Any:
    """A float copy of ``m`` whose ``nn.Linear`` layers compute qlab's simulation of the module
    :func:`.linear.quantize` puts there (same arguments)."""
    weights = "fp4" if weights == "fp4_bnb" else weights
    if weights not in FORMATS:
        raise ValueError(f"{BACKEND}: no simulation of format {weights!r}; it supports {', '.join(FORMATS)}")
    return replace_linears(  # a layer quantize() keeps float (rows not whole blocks) stays float here too
        m, lambda lin: _SimLinear(lin, weights, threshold, block_size, compress_statistics),
        where=lambda lin: weights == "int8" or lin.in_features % block_size == 0)


__all__ = ["BNB_INV_127_SQ", "four_bit_weight", "int8_weight", "llm_int8_linear", "outlier_columns", "simulate"]
