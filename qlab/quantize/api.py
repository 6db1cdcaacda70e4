"""``qlab.quantize_(model, config, calibration=None)``: one entry point for every pipeline.

The config's type picks the method through a registry, so a new method plugs in without
editing this file::

    from qlab.quantize.api import register_method
    register_method(GPTQConfig, run_gptq)      # run_gptq(model, config, calibration, **kw) -> report

A config class names the module that implements it (``method_module``); ``quantize_`` imports
that module on first use, and the module registers itself at import.

``model`` is preferably a :func:`qlab.models.load` result (its tokenizer turns text calibration
into batches, its ``evaluate()`` measures the result); a bare ``torch.nn.Module`` works too. The
model is modified in place; the return value is a report (per layer: formats, bytes, errors).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

import torch

from ..core.model import ModelLike
from ._report import LayerQuant, PipelineReport
from .configs import QuantConfig

Method = Callable[..., Any]
_METHODS: dict[type, Method] = {}


def register_method(config_type: type, fn: Method) -> Method:
    """Make ``quantize_`` run ``fn(model, config, calibration, **kwargs)`` for ``config_type``
    (and its subclasses). Registering a type again replaces its method."""
    if not isinstance(config_type, type):
        raise TypeError(f"register_method expects a config class, got {config_type!r}")
    if not callable(fn):
        raise TypeError(f"register_method expects a callable, got {fn!r}")
    _METHODS[config_type] = fn
    return fn


def methods() -> dict[str, str]:
    """Registered config types and the functions that implement them (for lessons and debugging)."""
    return {t.__name__: f"{fn.__module__}.{fn.__qualname__}" for t, fn in _METHODS.items()}


def _lookup(config_type: type) -> Method | None:
    for t in config_type.__mro__:
        if t in _METHODS:
            return _METHODS[t]
    return None


def method_for(config: Any) -> Method:
    """The function that implements ``config``'s type (importing its module on first use)."""
    fn = _lookup(type(config))
    if fn is None:
        module = getattr(config, "method_module", "")
        if module:
            try:
                import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                raise ValueError(
                    f"{type(config).__name__} is implemented in {module}, which is not available"
                ) from None
            fn = _lookup(type(config))
    if fn is None:
        known = ", ".join(sorted(t.__name__ for t in _METHODS)) or "none"
        raise ValueError(
            f"no quantization method registered for {type(config).__name__} (registered: {known}); "
            f"use qlab.quantize.api.register_method({type(config).__name__}, fn)"
        )
    return fn


def quantize_(model: ModelLike, config: QuantConfig, calibration: Any = None, **kwargs: Any) -> Any:
    """Quantize ``model`` in place with ``config``; return the method's report.

    ``calibration``: input batches (tensors, tokenizer dicts, ``(x, y)`` pairs) or text for a
    model with a tokenizer (see :mod:`qlab.quantize.calibration`); QAT takes its training data
    here. Extra keyword arguments go to the method.

    >>> m = qlab.models.load("digits-cnn")                                            # doctest: +SKIP
    >>> x, _ = qlab.models.digits.load_split("train")                                 # doctest: +SKIP
    >>> report = qlab.quantize_(m, PTQConfig(weights="int8", activations="int8"), calibration=x[:256])  # doctest: +SKIP
    >>> print(report.table()); m.evaluate()                                           # doctest: +SKIP
    """
    if not isinstance(config, QuantConfig):
        raise TypeError(
            f"config must be a qlab config (PTQConfig, DynamicConfig, QATConfig, ...), got {type(config).__name__}"
        )
    if not isinstance(model, torch.nn.Module) and not isinstance(getattr(model, "model", None), torch.nn.Module):
        raise TypeError(f"model must be a qlab.models.load() result or a torch.nn.Module, got {type(model).__name__}")
    return method_for(config)(model, config, calibration, **kwargs)


__all__ = ["quantize_", "register_method", "method_for", "methods", "PipelineReport", "LayerQuant"]
