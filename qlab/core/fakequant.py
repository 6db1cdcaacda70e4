"""One fake-quantized ``nn.Linear`` and the helper that puts it in place of every ``nn.Linear``.

Simulating a quantized runtime in float32 ("fake quantization", Jacob et al., 2018, "Quantization
and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
arXiv:1712.05877): the weight is replaced by its decoded value, and the input of every call is
rounded through an activation format before the float matmul. The backend simulations
(torch.ao dynamic, ONNX Runtime, bitsandbytes) build their layers with :func:`replace_linears`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..formats import roundtrip
from .model import Loaded


class FakeQuantLinear(nn.Module):
    """``nn.Linear`` with a fixed fake-quantized weight ``w_hat`` and, when ``act_format`` is set,
    inputs rounded through ``roundtrip(x, act_format, **act_options)`` on every call."""

    def __init__(
        self, lin: nn.Linear, w_hat: np.ndarray, act_format: str | None = None, act_options: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(np.ascontiguousarray(w_hat, np.float32)), requires_grad=False)
        self.bias = None if lin.bias is None else nn.Parameter(lin.bias.detach().clone(), requires_grad=False)
        self.act_format = act_format
        self.act_options = dict(act_options or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_format is not None and x.numel():
            x = torch.from_numpy(roundtrip(x.detach().float().numpy(), self.act_format, **self.act_options))
        return nn.functional.linear(x, self.weight, self.bias)


def linear_names(model: nn.Module) -> list[str]:
    """Names of the modules whose type is exactly ``nn.Linear`` (subclasses are someone else's)."""
    return [n for n, mod in model.named_modules() if type(mod) is nn.Linear]


def replace_linears(
    m: Loaded, make: Callable[[nn.Linear], nn.Module], where: Callable[[nn.Linear], bool] | None = None
) -> Loaded:
    """A copy of ``m`` (``dataclasses.replace`` with a deep-copied module) whose ``nn.Linear``
    layers are ``make(linear)`` -- those for which ``where(linear)`` holds, or all of them."""
    model = copy.deepcopy(m.model).eval()
    for name in linear_names(model):
        lin = model.get_submodule(name)
        if where is not None and not where(lin):
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, make(lin))
    return dataclasses.replace(m, model=model)


__all__ = ["FakeQuantLinear", "linear_names", "replace_linears"]
