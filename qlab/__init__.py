"""qlab: a workbench for learning and exploring neural-network quantization."""

from importlib import import_module
from typing import Any

from . import (  # noqa: I001  (order matters)
    _numba_cache,  # noqa: F401  (first: numba's kernel cache goes outside the package)
    _offline,  # noqa: F401  (no library reaches for a model hub)
    formats,
)
from .formats import roundtrip

__version__ = "0.1.0"

# these import torch/transformers: loaded on first use, so `import qlab` stays fast
_LAZY_MODULES = ("analysis", "backends", "cache", "eval", "exercises", "models", "observers", "quantize", "viz")
_LAZY_ATTRS = {
    "quantize_model": "quantize",
    "quantize_": "quantize",
    "PTQConfig": "quantize",
    "DynamicConfig": "quantize",
    "QATConfig": "quantize",
    "LLMInt8Config": "quantize",
    "SmoothQuantConfig": "quantize",
    "AWQConfig": "quantize",
    "GPTQConfig": "quantize",
    "HQQConfig": "quantize",
    "RotationConfig": "quantize",
    "WeightOnlyConfig": "quantize",
    "sweep": "analysis.sweep",
}
__all__ = ["formats", "roundtrip", "__version__", *_LAZY_MODULES, *_LAZY_ATTRS]


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return import_module(f".{name}", __name__)
    if name in _LAZY_ATTRS:
        return getattr(import_module(f".{_LAZY_ATTRS[name]}", __name__), name)
    raise AttributeError(f"module 'qlab' has no attribute {name!r}")
