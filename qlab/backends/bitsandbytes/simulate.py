"""qlab's simulations of bitsandbytes' ``Linear8bitLt`` and ``Linear4bit``.

4-bit: qlab's ``nf4`` / ``fp4_bnb`` formats are bit-exact with bitsandbytes' CPU quantizer
(:mod:`qlab.formats.codebook`), ``double_quant=True`` being ``compress_statistics``. What
``Linear4bit`` then computes on the CPU depends on the CPU (bitsandbytes 0.50):

* without AVX512-BF16: dequantize, then a float32 matmul --
  ``F.linear(x, roundtrip(w, "nf4", ...), b)`` up to float32 summation order;
* with AVX512-BF16 (``bitsandbytes.functional.has_avx512bf16()``; Sapphire Rapids, Zen 4 and
  later), in inference (eval mode, no grad) the weight is repacked on the first call and a fused
  kernel runs: the input is rounded to bfloat16, each weight is ``bf16(code) * bf16(absmax)``
  (the 16 code values and the dequantized block absmax, each rounded to bfloat16), products are
  summed in float32 and the sum is rounded to bfloat16; the bias is added in float32 afterwards.
  :func:`four_bit_weight` with ``bf16=True`` and :func:`simulate` (which detects the CPU as
  bitsandbytes does) reproduce it to one bfloat16 rounding step (the kernel's summation order).

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
from ...formats import get
from ...formats.base import Encoded
from .linear import BACKEND, BF16_BLOCK_N, FORMATS, check_cpu_kernel, cpu_bf16_kernel


def four_bit_weight(
    w: np.ndarray, weights: str = "nf4", block_size: int = 64, double_quant: bool = True, bf16: bool = False
) -> np.ndarray:
    """The weight ``Linear4bit`` multiplies with: qlab's ``nf4`` / ``fp4_bnb`` codec, whose blocks
    follow rows (bitsandbytes cuts them from the flattened weight: the same blocks when a row
    holds whole blocks, the only case :mod:`.linear` quantizes). ``bf16=True``: the weight of the
    AVX512-BF16 kernel, ``bf16(code) * bf16(absmax)`` computed in float32 (module docstring)."""
    fmt = get("fp4_bnb" if weights == "fp4" else weights)
    enc = fmt.encode(w, block_size=block_size, double_quant=double_quant)
    if not bf16:
        return fmt.decode(enc)
    # the code value of every weight: decode the same codes with every block absmax = 1
    unit = Encoded(enc.format, enc.shape, {"codes": enc.parts["codes"],
                                           "absmax": np.ones(enc.size // block_size, np.float32)},
                   enc.nbytes, {**enc.options, "double_quant": False})  # fmt: skip
    codes = torch.from_numpy(fmt.decode(unit)).reshape(-1, block_size)
    absmax = torch.from_numpy(fmt.block_absmax(enc))[:, None]
    bf = torch.bfloat16
    return (codes.to(bf).float() * absmax.to(bf).float()).reshape(enc.shape).numpy()


class _SimLinear(nn.Module):
    def __init__(
        self, lin: nn.Linear, weights: str, threshold: float, block_size: int, double_quant: bool, bf16: bool
    ) -> None:
        super().__init__()
        self.weights, self.threshold, self.bf16 = weights, threshold, bf16 and weights != "int8"
        w = lin.weight.detach().float()
        if weights != "int8":
            w = torch.from_numpy(four_bit_weight(w.numpy(), weights, block_size, double_quant, self.bf16))
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = None if lin.bias is None else nn.Parameter(lin.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights == "int8":
            return llm_int8_linear(x, self.weight, self.bias, self.threshold)
        if self.bf16:  # the AVX512-BF16 kernel: bf16 input, float32 sums rounded to bf16, then + bias
            y = nn.functional.linear(x.to(torch.bfloat16).float(), self.weight).to(torch.bfloat16).float()
            return y if self.bias is None else y + self.bias
        return nn.functional.linear(x, self.weight, self.bias)


def simulate(
    m: Any, weights: str = "nf4", threshold: float = 6.0, block_size: int = 64, compress_statistics: bool = True,
    cpu_kernel: str = "auto",
) -> Any:
    """A float copy of ``m`` whose ``nn.Linear`` layers compute qlab's simulation of the module
    :func:`.linear.quantize` puts there (same arguments): with ``cpu_kernel="auto"`` the 4-bit
    layers follow this CPU as bitsandbytes does (the bfloat16 kernel where
    :func:`cpu_bf16_kernel`), with ``"float32"`` the float32 path."""
    bf16 = check_cpu_kernel(cpu_kernel) == "auto" and cpu_bf16_kernel()
    weights = "fp4" if weights == "fp4_bnb" else weights
    if weights not in FORMATS:
        raise ValueError(f"{BACKEND}: no simulation of format {weights!r}; it supports {', '.join(FORMATS)}")
    return replace_linears(  # a layer quantize() keeps float stays float here too
        m, lambda lin: _SimLinear(lin, weights, threshold, block_size, compress_statistics, bf16),
        where=lambda lin: weights == "int8" or (
            lin.in_features % block_size == 0 and not (bf16 and lin.out_features % BF16_BLOCK_N)))


__all__ = ["BNB_INV_127_SQ", "four_bit_weight", "int8_weight", "llm_int8_linear", "outlier_columns", "simulate"]
