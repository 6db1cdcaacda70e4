"""Configs of the LLM methods: LLM.int8(), SmoothQuant, AWQ, GPTQ (re-exported by :mod:`.configs`).

Only the configs live here (validated on creation, like every qlab config); each method is
implemented in the module its ``method_module`` names and registers itself with
:func:`qlab.quantize.api.register_method` on import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .config_base import ACT_GRANULARITIES, QuantConfig, _positive


@dataclass(frozen=True)
class WeightOnlyConfig(QuantConfig):
    """Weight-only quantization with a recipe (:mod:`qlab.quantize.recipes`): a format name
    (``"q4_k"``), ``(name, options)``, a mapping of fnmatch patterns to formats (per-layer
    recipes) or a llama.cpp mix (``"q4_k_m"``); ``include`` / ``exclude`` select the weights.
    ``qlab.quantize_(m, WeightOnlyConfig(recipe="q4_k_m"))`` returns a :class:`QuantReport`.

    ``imatrix``: an importance matrix for the GGML formats (llama.cpp's ``quant_weights``): an
    :class:`qlab.quantize.imatrix.IMatrix`, the path of a GGUF imatrix file (``llama-imatrix``'s
    or qlab's) or a mapping of GGUF tensor / module names to vectors; each weight's vector goes to
    ``encode(w, imatrix=...)``; formats without the option ignore it. iq2_xxs, iq2_xs and iq1_s
    require it (as ``llama-quantize``)."""

    weights: str | None = None
    recipe: Any = "q4_k_m"
    imatrix: Any = field(default=None, compare=False)

    method_module: ClassVar[str] = "qlab.quantize.model"

    def __post_init__(self) -> None:
        if self.weights is not None:
            raise ValueError("WeightOnlyConfig takes recipe=..., not weights=")
        super().__post_init__()
        if self.recipe is None:
            raise ValueError("WeightOnlyConfig needs a recipe (a format name, a mapping or a llama.cpp mix)")
        from .imatrix import check_imatrix_arg

        check_imatrix_arg(self.imatrix)


@dataclass(frozen=True)
class LLMInt8Config(QuantConfig):
    """LLM.int8() (Dettmers et al., 2022): int8 vector-wise quantization with the input feature
    columns whose magnitude exceeds ``threshold`` kept in 16-bit (mixed-precision decomposition)."""

    activations: str | None = "int8"
    threshold: float = 6.0

    method_module: ClassVar[str] = "qlab.quantize.llm_int8"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self.threshold, "threshold", float)


@dataclass(frozen=True)
class SmoothQuantConfig(QuantConfig):
    """SmoothQuant (Xiao et al., 2023): per-channel factors ``s = max|X|^alpha / max|W|^(1-alpha)``
    move activation outliers into the weights before W8A8 quantization."""

    activations: str | None = "int8"
    alpha: float = 0.5
    observer: str = "minmax"
    activation_granularity: str = "tensor"

    method_module: ClassVar[str] = "qlab.quantize.smoothquant"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")
        if self.activation_granularity not in (*ACT_GRANULARITIES, "token"):
            raise ValueError(f"activation_granularity must be 'tensor', 'channel' or 'token', got {self.activation_granularity!r}")
        from .observers import get as get_observer

        object.__setattr__(self, "observer", get_observer(self.observer).name)


@dataclass(frozen=True)
class AWQConfig(QuantConfig):
    """AWQ (Lin et al., 2024): activation-aware per-input-channel scales ``s = mean|X|^alpha``,
    alpha searched on a grid of ``n_grid`` points, weight-only; ``clip``: the reference's weight-range
    search. Calibration: ``n_samples`` windows of ``seq_len`` tokens. Integer weights are asymmetric
    (zero-point, as in the paper) unless ``weight_options`` sets ``symmetric``. ``group_size`` defaults to 32
    (the papers use 128, which does not divide SmolLM2's 576-wide rows)."""

    weights: str | None = "int4"
    group_size: int | None = 32
    n_grid: int = 20
    clip: bool = True
    n_samples: int = 32
    seq_len: int = 512
    progress: bool = True

    method_module: ClassVar[str] = "qlab.quantize.awq"

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self.n_grid, "n_grid")
        if not isinstance(self.clip, bool):
            raise ValueError(f"clip must be True or False, got {self.clip!r}")
        _positive(self.n_samples, "n_samples")
        _positive(self.seq_len, "seq_len")


@dataclass(frozen=True)
class GPTQConfig(QuantConfig):
    """GPTQ (Frantar et al., 2023): column-by-column rounding with Hessian-based error compensation
    (``H = 2 X X^T + damp * mean(diag H) * I``), in blocks of ``block_size`` columns, optionally in
    order of decreasing ``diag(H)`` (``act_order``), weight-only. Calibration: ``n_samples`` windows
    of ``seq_len`` tokens. Integer weights are asymmetric (zero-point, as in the paper) unless
    ``weight_options`` sets ``symmetric``."""

    weights: str | None = "int4"
    group_size: int | None = 32
    act_order: bool = False
    damp: float = 0.01
    block_size: int = 128
    n_samples: int = 32
    seq_len: int = 512
    progress: bool = True

    method_module: ClassVar[str] = "qlab.quantize.gptq"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.act_order, bool):
            raise ValueError(f"act_order must be True or False, got {self.act_order!r}")
        _positive(self.damp, "damp", float)
        _positive(self.block_size, "block_size")
        _positive(self.n_samples, "n_samples")
        _positive(self.seq_len, "seq_len")


__all__ = ["LLMInt8Config", "SmoothQuantConfig", "AWQConfig", "GPTQConfig"]
