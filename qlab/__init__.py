"""qlab: a workbench for learning and exploring neural-network quantization."""

from importlib import import_module
from typing import Any

from . import formats
from .formats import roundtrip

__version__ = "0.1.0"
__all__ = ["eval", "formats", "models", "roundtrip", "__version__"]

_LAZY = ("eval", "models")  # import torch/transformers: loaded on first use, so `import qlab` stays fast


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'qlab' has no attribute {name!r}")
