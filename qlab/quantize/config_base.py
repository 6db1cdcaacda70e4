"""What every quantization config shares: :class:`QuantConfig` (weights, activations, granularity,
group size, format options, include / exclude) and the checks that turn its fields into format
specs (:func:`weight_spec`, :func:`activation_spec`). The method configs build on it:
:mod:`.configs` (PTQ, dynamic, QAT) and :mod:`.llm_configs` (weight-only recipes, LLM.int8,
SmoothQuant, AWQ, GPTQ).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .. import formats
from .recipes import Spec

ACT_GRANULARITIES = ("tensor", "channel")
DYNAMIC_GRANULARITIES = ("tensor", "token")
WEIGHT_GRANULARITIES = ("channel", "tensor")
QAT_METHODS = ("lsq", "ste")


def _format_name(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a format name (str), got {value!r}")
    try:
        return formats.get(value).name
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def _positive(value: Any, what: str, kind: type = int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, kind | int) and not isinstance(value, bool) and value > 0
    if not ok:
        raise ValueError(f"{what} must be a positive {kind.__name__}, got {value!r}")


def weight_spec(name: str, granularity: str | None, group_size: int | None, extra: Mapping[str, Any]) -> Spec:
    """The format and encode options that quantize weight rows (see the module docstring)."""
    fmt = formats.get(name)
    opts = dict(extra)
    defaults = fmt.defaults
    if "granularity" in defaults:
        if group_size is not None:
            opts.setdefault("granularity", "group")
            opts.setdefault("group_size", group_size)
        elif granularity is not None:
            opts.setdefault("granularity", granularity)
        elif defaults["granularity"] == "tensor":  # fp8/fp6/fp4: per output channel for weights
            opts.setdefault("granularity", "channel")
    elif "block_size" in defaults:
        if group_size is not None:
            opts.setdefault("block_size", group_size)
    elif group_size is not None and group_size != fmt.block_size:
        raise ValueError(
            f"{fmt.name} has fixed blocks of {fmt.block_size} values; group_size={group_size} cannot be "
            f"applied (leave group_size=None)"
        )
    if granularity is not None and "granularity" not in defaults:
        raise ValueError(f"{fmt.name} has no scale granularity option (weight_granularity={granularity!r})")
    fmt.options(**opts)  # unknown option names and bad values raise ValueError naming them
    return Spec(fmt.name, opts)


def activation_spec(name: str, extra: Mapping[str, Any]) -> Spec:
    """The activation format with its options (integers default to asymmetric)."""
    fmt = formats.get(name)
    opts = dict(extra)
    if fmt.family == "integer":
        opts.setdefault("symmetric", False)
    fmt.options(**opts)
    return Spec(fmt.name, opts)


@dataclass(frozen=True)
class QuantConfig:
    """Fields shared by every method (see the module docstring)."""

    weights: str | None = "int8"
    activations: str | None = None
    group_size: int | None = None
    weight_granularity: str | None = None
    weight_options: Mapping[str, Any] = field(default_factory=dict)
    activation_options: Mapping[str, Any] = field(default_factory=dict)
    include: str | tuple[str, ...] | None = None
    exclude: str | tuple[str, ...] | None = None

    #: the module implementing the method (imported on first use by ``quantize_``)
    method_module: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.weights is not None:
            object.__setattr__(self, "weights", _format_name(self.weights, "weights"))
        if self.activations is not None:
            object.__setattr__(self, "activations", _format_name(self.activations, "activations"))
        _positive(self.group_size, "group_size", allow_none=True)
        if self.weight_granularity is not None and self.weight_granularity not in WEIGHT_GRANULARITIES:
            raise ValueError(f"weight_granularity must be one of {WEIGHT_GRANULARITIES}, got {self.weight_granularity!r}")
        if self.weight_granularity == "tensor" and self.group_size is not None:
            raise ValueError("weight_granularity='tensor' and group_size are contradictory; give one")
        for name in ("include", "exclude"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
            elif v is not None and not isinstance(v, str | tuple):
                raise ValueError(f"{name} must be a pattern or a list of patterns, got {v!r}")
        for name in ("weight_options", "activation_options"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name} must be a dict of format options, got {getattr(self, name)!r}")
        if self.weights is not None:
            self.weight_spec()
        elif self.group_size is not None or self.weight_options:
            raise ValueError("group_size / weight_options given but weights=None (weights kept in float)")
        if self.activations is not None:
            self.activation_spec()
        elif self.activation_options:
            raise ValueError("activation_options given but activations=None (weight-only)")

    def weight_spec(self) -> Spec:
        """``Spec(format, options)`` for the weights (usable as a :func:`qlab.quantize_model` recipe)."""
        if self.weights is None:
            raise ValueError("this config keeps weights in float (weights=None)")
        return weight_spec(self.weights, self.weight_granularity, self.group_size, self.weight_options)

    def activation_spec(self) -> Spec:
        if self.activations is None:
            raise ValueError("this config is weight-only (activations=None)")
        return activation_spec(self.activations, self.activation_options)

    def label(self) -> str:
        """Short name, e.g. ``PTQ W8A8 int8/int8 (percentile)``."""
        w = self.weight_spec().label() if self.weights else "float"
        a = self.activations or "float"
        return f"{type(self).__name__.removesuffix('Config')} {w}/{a}"

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = dict(v) if isinstance(v, Mapping) else v
        return {"method": type(self).__name__, **out}


__all__ = ["ACT_GRANULARITIES", "DYNAMIC_GRANULARITIES", "QAT_METHODS", "WEIGHT_GRANULARITIES", "QuantConfig",
           "activation_spec", "weight_spec"]
