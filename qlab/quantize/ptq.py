"""Static post-training quantization (PTQ): prepare -> calibrate -> convert.

The recipe of PyTorch's eager-mode static quantization (``prepare`` inserts observers, running
representative data calibrates them, ``convert`` freezes the ranges), simulated with any format
of :mod:`qlab.formats` (Jacob et al., 2018; Nagel et al., 2021, "A White Paper on Neural Network
Quantization", section 3)::

    report = qlab.quantize_(m, PTQConfig(weights="int8", activations="int8", observer="percentile"),
                            calibration=x_train[:256])

or step by step, to look at the observers before converting::

    session = prepare(m, config)          # observers on every Linear/Conv input
    session.calibrate(batches)            # runs the model; progress bar
    session.observers["fc1"].range()      # what was seen
    report = session.convert()            # weights via qlab.formats; activations with fixed ranges

Weights are replaced by ``decode(encode(w))`` of the config's format (rows = output channels,
conv kernels flattened), activations by the format's quantization with the observed range
(:mod:`qlab.quantize.fakequant`); block-scaled activation formats (MX, NF4, GGML) scale each
block themselves and use the observed range only to clip. The report measures each layer's
input SQNR on the first calibration batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.model import ModelLike
from . import _layers as L
from ._report import PipelineReport
from .calibration import batches, feed
from .configs import PTQConfig
from .fakequant import kind, quantizer
from .observers import Observer
from .observers import get as get_observer


class PTQSession:
    """A model with observers inserted (:func:`prepare`); ``calibrate`` then ``convert``."""

    def __init__(self, model: ModelLike, config: PTQConfig) -> None:
        L.check_model(model)
        self.model, self.config = model, config
        self.wspec = config.weight_spec() if config.weights else None
        self.aspec = config.activation_spec() if config.activations else None
        self.layers = L.find_layers(model, config.include, config.exclude)
        L.check_rows(self.layers, self.wspec, self.aspec)
        L.check_finite(self.layers)
        if self.aspec is not None and kind(self.aspec) != "ranged" and config.activation_granularity != "tensor":
            raise ValueError(
                f"activation format {self.aspec.label()} has no per-channel scale; activation_granularity must be 'tensor'"
            )
        self.observers: dict[str, Observer] = {}
        self.n_batches = 0
        self.first_batch: Any = None
        if needs_calibration(config):
            for la in self.layers:
                opts = dict(config.observer_options)
                if config.activation_granularity == "channel":
                    opts.update(granularity="channel", axis=la.channel_axis)
                obs = get_observer(config.observer, **opts)
                obs.where = la.name
                self.observers[la.name] = obs
                L.set_input_hook(la, "observer", obs.observe)

    def calibrate(self, data: Any, batch_size: int = 32) -> int:
        """Run calibration data through the model (see :func:`qlab.quantize.calibration.batches`)."""
        bs = batches(data, self.model, batch_size)
        if self.first_batch is None:
            self.first_batch = bs[0]
        self.n_batches += feed(self.model, bs, self.config.progress)
        return self.n_batches

    def convert(self) -> PipelineReport:
        """Freeze the observed ranges, quantize the weights, switch activation quantization on."""
        cfg = self.config
        if needs_calibration(cfg) and self.n_batches == 0:
            raise ValueError(
                "convert() before any calibration batch: static activation quantization needs calibration "
                "data (calibration=... in quantize_); for weight-only use activations=None"
            )
        missing = [n for n, o in self.observers.items() if o.n_batches == 0]
        if missing:
            raise ValueError(
                f"layer(s) {', '.join(missing)} never ran during calibration, so their activation range is "
                f"unknown; exclude them (exclude=[...]) or calibrate with inputs that reach them"
            )
        L.check_model(self.model)  # convert() once
        probe: dict[str, Any] = {}
        rows = []
        act: dict[str, dict[str, Any]] = {}
        for la in self.layers:  # ranges first: a bad range fails before anything changes
            if self.aspec is None:
                continue
            if la.name not in self.observers:  # a plain cast (fp16, bf16): no range
                act[la.name] = {"q": quantizer(self.aspec, row_axis=la.channel_axis), "act_lo": None, "act_hi": None}
                continue
            obs = self.observers[la.name]
            lo, hi = obs.range(self.aspec)
            axis = None if cfg.activation_granularity == "tensor" else la.channel_axis
            q = quantizer(self.aspec, lo.ravel() if axis is not None else lo, hi.ravel() if axis is not None else hi,
                          axis=axis, row_axis=la.channel_axis)  # fmt: skip
            act[la.name] = {"q": q, "act_lo": float(np.min(lo)), "act_hi": float(np.max(hi))}
        encs = L.encode_weights(self.layers, self.wspec)  # every weight checked before any changes
        for la in self.layers:
            L.remove_hook(la, "observer")
            w = L.quantize_weight(la, self.wspec, encs.get(la.name))
            a = act.get(la.name)
            if a is not None:
                L.set_input_hook(la, "quantize", L.quantizing_hook(la, a["q"], probe))
            rows.append(L.layer_report(
                la, **w, activations=self.aspec.label() if self.aspec else "f32",
                observer=cfg.observer if la.name in self.observers else "",
                act_lo=a and a["act_lo"], act_hi=a and a["act_hi"],
            ))  # fmt: skip
        L.mark(self.model, cfg.label())
        if self.first_batch is not None and act:
            probe["on"] = True
            try:
                feed(self.model, [self.first_batch], progress=False)
            finally:
                probe["on"] = False
            for r in rows:
                if r.name in probe:
                    r.act_sqnr_db = float(probe[r.name][0])
        return PipelineReport(
            cfg.label(), rows, L.other_params(self.model, self.layers), cfg.to_dict(),
            {"calibration_batches": self.n_batches},
        )  # fmt: skip


def needs_calibration(config: PTQConfig) -> bool:
    """Static activation ranges need calibration data (weight-only and plain casts do not)."""
    return config.activations is not None and kind(config.activation_spec()) != "cast"


def prepare(model: ModelLike, config: PTQConfig) -> PTQSession:
    """Insert observers (one per Linear/Conv input) and return the session to calibrate and convert."""
    if not isinstance(config, PTQConfig):
        raise TypeError(f"prepare() takes a PTQConfig, got {type(config).__name__}")
    return PTQSession(model, config)


def quantize_ptq(model: ModelLike, config: PTQConfig, calibration: Any = None, batch_size: int = 32) -> PipelineReport:
    """``prepare`` + ``calibrate`` + ``convert`` (what ``qlab.quantize_`` runs for a PTQConfig)."""
    calibrate = needs_calibration(config)
    if calibrate:
        data = batches(calibration, model, batch_size)  # fails early, before observers are attached
    session = prepare(model, config)
    try:
        if calibrate:
            session.calibrate(data)
    except BaseException:
        for la in session.layers:  # leave the model as it was (float, no hooks)
            L.remove_hook(la, "observer")
        raise
    report = session.convert()
    if not calibrate and calibration is not None:
        report.extra["note"] = "no activation range to calibrate: calibration data not used"
    return report


def _register() -> None:
    from .api import register_method

    register_method(PTQConfig, quantize_ptq)


_register()

__all__ = ["PTQSession", "needs_calibration", "prepare", "quantize_ptq"]
