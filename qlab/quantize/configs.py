"""Configuration dataclasses of the quantization pipelines (torchao / optimum-quanto style).

One dataclass per method, validated when it is created (an unknown format, observer or a
combination that cannot work raises ``ValueError`` at once, not halfway through calibration)::

    qlab.quantize_(m, PTQConfig(weights="int8", activations="int8", observer="percentile"), calibration=batches)
    qlab.quantize_(m, PTQConfig(weights="int4", activations=None, group_size=32))    # W4A16
    qlab.quantize_(m, PTQConfig(weights="fp8_e4m3", activations="fp8_e4m3"))         # FP8 W8A8

Common fields: ``weights`` (a format name of :mod:`qlab.formats`, or ``None`` to keep weights in
float), ``activations`` (a format name, or ``None`` for weight-only), ``group_size`` (scale groups
along a weight row; ``None`` = the format's granularity), ``weight_granularity`` (``"channel"`` /
``"tensor"``, for formats with a scale option), ``weight_options`` / ``activation_options`` (extra
options passed to the format), ``include`` / ``exclude`` (fnmatch patterns on module names).

How the config maps onto format options (:meth:`QuantConfig.weight_spec`):

* formats with a ``granularity`` option (``int*``, ``fp8_*``, ``fp6_*``, ``fp4_e2m1``): per output
  channel by default (``weight_granularity``), ``group`` when ``group_size`` is given;
* bitsandbytes codebooks (``nf4``, ``fp4_bnb``): ``group_size`` is their ``block_size``;
* fixed-block formats (MX, NVFP4, GGML types): ``group_size`` must be ``None`` or their block.

Activations with an integer format are asymmetric (``symmetric=False``, PyTorch's ``quint8``
convention, which keeps post-ReLU ranges at full resolution) unless ``activation_options`` says
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import formats
from .config_base import (
    ACT_GRANULARITIES,
    DYNAMIC_GRANULARITIES,
    QAT_METHODS,
    QuantConfig,
    _positive,
    activation_spec,
    weight_spec,
)
from .llm_configs import AWQConfig, GPTQConfig, LLMInt8Config, SmoothQuantConfig, WeightOnlyConfig


@dataclass(frozen=True)
class PTQConfig(QuantConfig):
    """Static post-training quantization: observers on every Linear/Conv input collect ranges over
    calibration batches, then weights and activations are fake-quantized with those fixed ranges.

    ``observer``: ``"minmax"``, ``"moving_average"``, ``"percentile"``, ``"mse"`` or ``"entropy"``
    (:func:`qlab.quantize.observers.get`), with ``observer_options``; ``activation_granularity``:
    ``"tensor"`` or ``"channel"`` (one range per input feature/channel).
    """

    activations: str | None = "int8"
    observer: str = "minmax"
    observer_options: Mapping[str, Any] = field(default_factory=dict)
    activation_granularity: str = "tensor"
    progress: bool = True

    method_module: ClassVar[str] = "qlab.quantize.ptq"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weights is None and self.activations is None:
            raise ValueError("weights=None and activations=None: nothing to quantize")
        if self.activation_granularity not in ACT_GRANULARITIES:
            raise ValueError(
                f"activation_granularity must be one of {ACT_GRANULARITIES}, got {self.activation_granularity!r}"
            )
        from .observers import get as get_observer

        if not isinstance(self.observer_options, Mapping):
            raise ValueError(f"observer_options must be a dict, got {self.observer_options!r}")
        obs = get_observer(self.observer, **self.observer_options)  # unknown observer / option -> ValueError
        object.__setattr__(self, "observer", obs.name)  # aliases ("kl") -> the observer's name
        if self.activations is not None and obs.name in ("mse", "entropy"):
            from .fakequant import kind

            a = self.activation_spec()
            if kind(a) != "ranged":
                raise ValueError(
                    f"observer={self.observer!r} searches a clipping range for a per-tensor scale; the activation "
                    f"format {a.label()} has none (it scales each block itself, or is a plain cast); "
                    f"use minmax or percentile to clip"
                )
            if obs.name == "entropy":
                obs.quantized_bins(a, False)  # non-integer formats need num_quantized_bins

    def label(self) -> str:
        return super().label() + (f" ({self.observer})" if self.activations else "")


@dataclass(frozen=True)
class DynamicConfig(QuantConfig):
    """Dynamic quantization: weights quantized ahead, activations quantized at run time from each
    batch's own range, per tensor or per token (one range per row of the last axis)."""

    activations: str | None = "int8"
    granularity: str = "tensor"

    method_module: ClassVar[str] = "qlab.quantize.dynamic"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.activations is None:
            raise ValueError(
                "DynamicConfig quantizes activations at run time; for weight-only use PTQConfig(activations=None)"
            )
        if self.granularity not in DYNAMIC_GRANULARITIES:
            raise ValueError(f"granularity must be one of {DYNAMIC_GRANULARITIES}, got {self.granularity!r}")


@dataclass(frozen=True)
class QATConfig(QuantConfig):
    """Quantization-aware training: fake quantization in the forward pass, gradients through the
    straight-through estimator (Bengio et al., 2013), then a convert step.

    ``method="lsq"``: learned step sizes (Esser et al., 2020, "Learned Step Size Quantization"),
    integer formats only; ``method="ste"``: the format's own scale rule every step (any format),
    activation ranges from a moving-average min-max observer (as PyTorch's ``FakeQuantize``).
    ``distill=True`` adds knowledge distillation from the float model (Hinton et al., 2015):
    ``loss = (1 - distill_weight) * CE + distill_weight * T**2 * KL(teacher_T || student_T)``;
    without labels the loss is the distillation term alone.
    """

    weights: str | None = "int4"
    activations: str | None = "int8"
    method: str = "lsq"
    distill: bool = False
    temperature: float = 2.0
    distill_weight: float = 0.5
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    progress: bool = True

    method_module: ClassVar[str] = "qlab.quantize.qat"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weights is None:
            raise ValueError("QATConfig needs a weights format")
        if self.method not in QAT_METHODS:
            raise ValueError(f"method must be one of {QAT_METHODS}, got {self.method!r}")
        if self.method == "lsq":
            self._check_lsq()
        if not isinstance(self.distill, bool):
            raise ValueError(f"distill must be True or False, got {self.distill!r}")
        _positive(self.temperature, "temperature", float)
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(f"distill_weight must be in [0, 1], got {self.distill_weight!r}")
        _positive(self.epochs, "epochs")
        _positive(self.lr, "lr", float)
        _positive(self.batch_size, "batch_size")

    def _check_lsq(self) -> None:
        w = self.weight_spec()
        if formats.get(w).family != "integer" or w.options.get("granularity") == "group":
            raise ValueError(
                f"method='lsq' learns one step size per tensor/channel of an integer format; "
                f"weights={w.label()} needs method='ste'"
            )
        if not formats.get(w).options(**w.options)["symmetric"]:  # int1 is asymmetric by default
            raise ValueError("method='lsq' uses a symmetric weight grid; drop symmetric=False or use method='ste'")
        if self.activations is not None and formats.get(self.activations).family != "integer":
            raise ValueError(f"method='lsq' quantizes activations to integers; activations={self.activations!r} needs method='ste'")


CONFIGS = (PTQConfig, DynamicConfig, QATConfig, LLMInt8Config, SmoothQuantConfig, AWQConfig, GPTQConfig)

__all__ = [
    "QuantConfig", "PTQConfig", "DynamicConfig", "QATConfig", "LLMInt8Config", "SmoothQuantConfig",
    "AWQConfig", "GPTQConfig", "WeightOnlyConfig", "CONFIGS", "weight_spec", "activation_spec",
]  # fmt: skip
