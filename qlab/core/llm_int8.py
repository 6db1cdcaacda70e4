"""LLM.int8() matrix multiplication, simulated in float: the numerics bitsandbytes' ``Linear8bitLt``
computes (Dettmers et al., 2022, "LLM.int8(): 8-bit Matrix Multiplication for Transformers at
Scale", arXiv:2208.07339), shared by :mod:`qlab.quantize.llm_int8` (the pipeline) and
:mod:`qlab.backends.bitsandbytes.simulate` (the check against the real kernel); the steps are
described there.
"""

from __future__ import annotations

import numpy as np
import torch

from ..formats import roundtrip

BNB_INV_127_SQ = 6.200124e-05  # bitsandbytes' int8_mm_dequant constant (sic)


def int8_weight(w: torch.Tensor) -> torch.Tensor:
    """The float weight ``Linear8bitLt`` effectively multiplies with: per-row int8 of the fp16 weight."""
    w16 = w.detach().to(torch.float16).float().numpy()
    return torch.from_numpy(roundtrip(w16, "int8", symmetric=True, granularity="channel"))


def llm_int8_linear(
    x: torch.Tensor, w: torch.Tensor | None, bias: torch.Tensor | None, threshold: float = 6.0,
    w_hat: torch.Tensor | None = None,
) -> torch.Tensor:
    """qlab's simulation of ``Linear8bitLt(threshold)`` on input ``x`` (any leading shape).

    ``w_hat``: ``int8_weight(w)`` computed once by the caller (then ``w`` may be None), so a layer
    that runs many batches does not re-quantize its weight on every call."""
    shape = x.shape
    a = x.detach().reshape(-1, shape[-1]).float()
    a16 = a.to(torch.float16).float()
    if w_hat is None:
        if w is None:
            raise ValueError("llm_int8_linear needs the weight w or its int8 form w_hat")
        w_hat = int8_weight(w)
    outliers = torch.zeros(a.shape[1], dtype=torch.bool)
    if threshold > 0:
        big = a16.abs() >= threshold
        outliers = big.any(0)
        a16 = a16.masked_fill(big, 0.0)
    a_hat = torch.from_numpy(roundtrip(a16.numpy(), "int8", symmetric=True, granularity="channel"))
    if a.shape[0] > 1:
        a_hat[:, outliers] = 0.0
    # a_hat @ w_hat.T == (CA @ CB.T) * SCA * SCB / 127**2; bnb's constant is 1.8e-5 relatively larger
    y = (a_hat.double() @ w_hat.double().T * (BNB_INV_127_SQ * 127.0**2)).float()
    if bias is not None:
        y = y + bias.detach().float()
    if outliers.any():
        y = y + a[:, outliers] @ w_hat[:, outliers].T
    return y.reshape(*shape[:-1], w_hat.shape[0])


def outlier_columns(x: torch.Tensor, threshold: float = 6.0) -> np.ndarray:
    """Indices of the input features LLM.int8() would keep in float for this input."""
    a16 = x.detach().reshape(-1, x.shape[-1]).to(torch.float16)
    return torch.nonzero((a16.abs() >= threshold).any(0)).flatten().numpy()


__all__ = ["BNB_INV_127_SQ", "int8_weight", "llm_int8_linear", "outlier_columns"]
