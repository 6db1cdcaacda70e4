"""Dynamic quantization: weights quantized ahead of time, activations at run time from each batch.

PyTorch's ``quantize_dynamic`` recipe (int8 ``Linear`` whose input scale is computed from the
input itself on every call), simulated with any format::

    qlab.quantize_(m, DynamicConfig(weights="int8", activations="int8", granularity="token"))

No calibration data: nothing is observed ahead. ``granularity="tensor"`` gives one range per
input tensor (per call), ``"token"`` one per row of the input's last axis -- per token for a
transformer's ``(batch, seq, features)`` input, per image for a ``Linear`` on ``(batch,
features)``. Conv inputs are read channels-last, so a "token" is a pixel's channel vector.
Block-scaled activation formats (MX, NF4, GGML) are dynamic by construction: each block's scale
comes from its own values. The report measures each layer's input SQNR on the first batch if
``calibration`` data are given (optional).
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.model import ModelLike
from . import _layers as L
from ._report import PipelineReport
from .calibration import batches, feed
from .configs import DynamicConfig
from .fakequant import dynamic_range
from .recipes import Spec


def _runtime_quantizer(spec: Spec, per_token: bool, channel_axis: int) -> Any:
    def q(x: torch.Tensor) -> torch.Tensor:
        if x.numel() == 0:
            return x
        xt = x.movedim(channel_axis, -1) if channel_axis != -1 else x
        y = dynamic_range(xt, spec, per_token)
        return y.movedim(-1, channel_axis) if channel_axis != -1 else y

    return q


def quantize_dynamic(model: ModelLike, config: DynamicConfig, calibration: Any = None, batch_size: int = 32) -> PipelineReport:
    """Quantize weights now and install run-time activation quantization (``qlab.quantize_``)."""
    L.check_model(model)
    wspec = config.weight_spec() if config.weights else None
    aspec = config.activation_spec()
    layers = L.find_layers(model, config.include, config.exclude)
    L.check_rows(layers, wspec, aspec)
    data = batches(calibration, model, batch_size) if calibration is not None else None
    probe: dict[str, Any] = {}
    rows = []
    encs = L.encode_weights(layers, wspec)  # every weight checked before any changes
    for la in layers:
        w = L.quantize_weight(la, wspec, encs.get(la.name))
        q = _runtime_quantizer(aspec, config.granularity == "token", la.channel_axis)
        L.set_input_hook(la, "quantize", L.quantizing_hook(la, q, probe))
        rows.append(L.layer_report(la, **w, activations=f"{aspec.label()} dynamic per {config.granularity}"))
    L.mark(model, config.label())
    if data:
        probe["on"] = True
        try:
            feed(model, data[:1], progress=False)
        finally:
            probe["on"] = False
        for r in rows:
            if r.name in probe:
                r.act_sqnr_db = float(probe[r.name][0])
    return PipelineReport(config.label(), rows, L.other_params(model, layers), config.to_dict())


def _register() -> None:
    from .api import register_method

    register_method(DynamicConfig, quantize_dynamic)


_register()

__all__ = ["quantize_dynamic"]
