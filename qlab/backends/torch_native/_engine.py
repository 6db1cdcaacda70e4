"""Shared plumbing of the PyTorch-native backend: the x86 engine, warnings, format checks."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

BACKEND = "torch_native"
ENGINE = "x86"  # fbgemm kernels with x86-specific heuristics (PyTorch >= 2.0's default on x86)


@contextmanager
def x86_engine() -> Iterator[None]:
    """Select the x86 quantized engine while preparing/converting, and keep torch.ao's
    deprecation chatter out of the notebook.

    ``torch.ao.quantization`` is deprecated in favour of torchao (``quantize_`` / pt2e) but
    still ships and works in PyTorch 2.13; qlab uses it because it is the engine that runs real
    int8 kernels (fbgemm) on a plain CPU wheel. The engine is left selected afterwards: packed
    weights are engine-specific and the same engine must run them.
    """
    if ENGINE not in torch.backends.quantized.supported_engines:
        raise RuntimeError(
            f"{BACKEND}: this PyTorch build has no '{ENGINE}' quantized engine "
            f"(supported: {torch.backends.quantized.supported_engines})"
        )
    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*`torch\.jit\.script_method` is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*must run observer before calling calculate_qparams.*")
        warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated.*")
        yield


def unsupported(fmt: object, method: str, supported: tuple[str, ...]) -> ValueError:
    return ValueError(
        f"{BACKEND} backend cannot run {method} quantization with format {fmt!r}; "
        f"it supports: {', '.join(supported)}"
    )
