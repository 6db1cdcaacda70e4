"""The layers a pipeline quantizes (Linear, Conv1d, Conv2d), their checks, weights and hooks.

Pipelines leave module types unchanged (transformers code that checks ``isinstance`` keeps
working): weights are overwritten with their fake-quantized values and activations are
quantized by forward pre-hooks on each layer's input. State lives in ``module._qlab`` (a dict);
the root module carries ``_qlab_quantized`` (the config label) so a model is not quantized twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import formats
from ..core.metrics import error_stats, sqnr_from_power
from ..core.model import ModelLike, torch_module
from ._report import LayerQuant
from .fakequant import kind, weight_roundtrip
from .recipes import Spec

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True, eq=False)
class Layer:
    """A supported layer: its name, module and facts about its input and weight rows."""

    name: str
    module: nn.Module

    @property
    def kind(self) -> str:
        return type(self.module).__name__

    @property
    def channel_axis(self) -> int:
        """Axis of the input that holds the layer's input features/channels."""
        return -1 if isinstance(self.module, nn.Linear) else 1

    @property
    def in_features(self) -> int:
        m = self.module
        return m.in_features if isinstance(m, nn.Linear) else m.in_channels

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.module.weight.shape)

    @property
    def row_length(self) -> int:
        """Values per weight row: in_features, or in_channels/groups * kernel size for conv."""
        return int(np.prod(self.shape[1:]))


def _patterns(p: str | Iterable[str] | None) -> list[str] | None:
    return None if p is None else [p] if isinstance(p, str) else list(p)


def find_layers(model: ModelLike, include: Any = None, exclude: Any = None) -> list[Layer]:
    """Every Linear/Conv1d/Conv2d of ``model`` (once, tied weights once), filtered by fnmatch patterns."""
    mod = torch_module(model)
    seen: set[int] = set()
    layers = []
    for name, m in mod.named_modules():
        if isinstance(m, SUPPORTED) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            layers.append(Layer(name, m))
    if not layers:
        types = sorted({type(m).__name__ for m in mod.modules()})
        raise ValueError(
            f"{type(mod).__name__} has no supported layer to quantize (Linear, Conv1d, Conv2d); "
            f"its modules are: {', '.join(types)}"
        )
    inc, exc = _patterns(include), _patterns(exclude)
    chosen = [
        la for la in layers
        if (inc is None or any(fnmatchcase(la.name, p) for p in inc))
        and not (exc is not None and any(fnmatchcase(la.name, p) for p in exc))
    ]  # fmt: skip
    if not chosen:
        raise ValueError(
            f"include={include!r} / exclude={exclude!r} leave no layer to quantize; layers: "
            + ", ".join(la.name for la in layers)
        )
    return chosen


def check_model(model: ModelLike) -> None:
    """Refuse a model that a pipeline has already quantized (hooks would stack)."""
    done = getattr(torch_module(model), "_qlab_quantized", None)
    if done:
        raise ValueError(
            f"this model is already quantized ({done}); quantize a fresh float copy "
            f"(LoadedModel.fresh(), or qlab.models.load again)"
        )


def check_rows(layers: list[Layer], wspec: Spec | None, aspec: Spec | None) -> None:
    """Every weight row (and, for block-scaled activation formats, every input row) must fit the
    format's blocks: a ``ValueError`` naming the layer, before anything is modified."""
    for la in layers:
        if wspec is not None and not formats.get(wspec).accepts_row(la.row_length, **wspec.options):
            raise ValueError(
                f"{la.name} ({la.kind} {'x'.join(map(str, la.shape))}): weight rows of {la.row_length} values "
                f"do not fit {wspec.label()} ({_block(wspec)}); exclude the layer "
                f"(exclude=[{la.name!r}]) or pick a format / group_size that divides {la.row_length}"
            )
        if aspec is not None and kind(aspec) == "roundtrip" and not formats.get(aspec).accepts_row(la.in_features, **aspec.options):
            raise ValueError(
                f"{la.name}: its input has {la.in_features} features per row, which do not fit the "
                f"activation format {aspec.label()} ({_block(aspec)}); exclude the layer (exclude=[{la.name!r}])"
            )


def check_finite(layers: list[Layer]) -> None:
    """Every selected layer's weight (and bias) is finite: a ``ValueError`` naming the layer. A
    NaN/Inf weight makes every observed range and every output past it meaningless, so a pipeline
    refuses it even when the weights themselves stay float (activation-only PTQ)."""
    for la in layers:
        for pname in ("weight", "bias"):
            p = getattr(la.module, pname, None)
            if p is not None and not bool(torch.isfinite(p.detach()).all()):
                n = int((~torch.isfinite(p.detach())).sum())
                raise ValueError(
                    f"{la.name}.{pname}: {n} NaN/Inf value(s); quantization needs finite weights "
                    f"(fix the model, or exclude the layer: exclude=[{la.name!r}])"
                )


def _block(s: Spec) -> str:
    fmt = formats.get(s)
    o = fmt.options(**s.options)
    if o.get("granularity") == "group":
        return f"groups of {o['group_size']}"
    if "block_size" in o:
        return f"blocks of {o['block_size']}"
    return f"blocks of {fmt.layout(**o).block_size}"


def encode_weights(layers: list[Layer], wspec: Spec | None) -> dict[str, formats.Encoded]:
    """Every layer's weight encoded (as ``(out, in*kh*kw)`` rows) before any is replaced: a weight
    the format refuses (NaN/Inf, a block scale overflow) raises ``ValueError`` naming the layer
    while the model is still untouched. Keeps the encodings (their size), not decoded copies."""
    if wspec is None:
        return {}
    fmt = formats.get(wspec)
    out = {}
    for la in layers:
        w = la.module.weight
        try:
            out[la.name] = fmt.encode(formats.base.as_float32(w.detach()).reshape(w.shape[0], -1), **wspec.options)
        except ValueError as e:
            raise ValueError(f"{la.name}: {e} (no layer was modified)") from None
    return out


def quantize_weight(la: Layer, wspec: Spec | None, enc: formats.Encoded | None = None) -> dict[str, Any]:
    """Replace the weight by its fake-quantized value (decoded from ``enc`` when given, see
    :func:`encode_weights`); return bytes and error statistics."""
    w = la.module.weight
    if wspec is None:
        return {"weights": "f32", "nbytes": 4 * w.numel()}
    orig = formats.base.as_float32(w.detach()).copy()  # as_float32 may share the weight's memory
    if enc is None:
        y, nbytes = weight_roundtrip(w, wspec)
    else:
        y, nbytes = formats.get(wspec).decode(enc).reshape(tuple(w.shape)), int(enc.nbytes)
    with torch.no_grad():
        w.copy_(torch.from_numpy(y).to(w.dtype))
    st = error_stats(orig, y)
    return {"weights": wspec.label(), "nbytes": nbytes, "sqnr_db": st["sqnr_db"], "mse": st["mse"],
            "max_abs_err": st["max_abs_err"]}  # fmt: skip


def layer_report(la: Layer, **fields: Any) -> LayerQuant:
    return LayerQuant(la.name, la.kind, la.shape, la.module.weight.numel(), **fields)


def other_params(model: ModelLike, layers: list[Layer]) -> int:
    covered = {id(la.module.weight) for la in layers}
    return sum(p.numel() for p in torch_module(model).parameters() if id(p) not in covered)


# -- hooks ---------------------------------------------------------------------------------------
def state(module: nn.Module) -> dict[str, Any]:
    if not hasattr(module, "_qlab"):
        module._qlab = {"handles": {}}
    return module._qlab


def set_input_hook(la: Layer, tag: str, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
    """Run ``fn`` on the layer's input before every forward; a returned tensor replaces the input."""
    remove_hook(la, tag)

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        out = fn(args[0])
        return None if out is None else (out, *args[1:])

    state(la.module)["handles"][tag] = la.module.register_forward_pre_hook(hook)


def remove_hook(la: Layer, tag: str) -> None:
    h = state(la.module)["handles"].pop(tag, None)
    if h is not None:
        h.remove()


def quantizing_hook(la: Layer, q: Callable[[torch.Tensor], torch.Tensor], probe: dict[str, list[float]]) -> Callable:
    """The activation hook of a converted layer: finite check, quantize, and -- while ``probe`` is
    switched on -- record the input SQNR."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):  # the sum: one cheap test
            raise ValueError(f"{la.name}: input activation has NaN/Inf values; they cannot be quantized")
        y = q(x)
        if probe.get("on"):
            xd, yd = x.detach().double(), y.detach().double()
            noise = float(((xd - yd) ** 2).sum())
            signal = float((xd**2).sum())
            probe.setdefault(la.name, []).append(sqnr_from_power(signal, noise))
        return y

    return fn


def mark(model: ModelLike, label: str) -> None:
    torch_module(model)._qlab_quantized = label


__all__ = [
    "Layer", "SUPPORTED", "find_layers", "check_model", "check_rows", "check_finite", "encode_weights", "quantize_weight", "layer_report",
    "other_params", "set_input_hook", "remove_hook", "quantizing_hook", "mark", "state",
]  # fmt: skip
