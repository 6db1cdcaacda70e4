"""Measurements for the lessons: quantization error, weight and activation statistics,
per-layer sensitivity and size-vs-accuracy sweeps of whole models."""

from .activations import ChannelStats, capture_activations, compare_activations, residual_outliers
from .error import compare_formats, error_stats, formats_with_bits, sqnr_db
from .sensitivity import SensitivityResult, groups_of, layer_sensitivity
from .sweep import SweepResult, cache_dir, sweep
from .weights import tensor_stats, weight_stats, weight_table

__all__ = [
    "compare_formats", "error_stats", "formats_with_bits", "sqnr_db",
    "tensor_stats", "weight_stats", "weight_table",
    "ChannelStats", "capture_activations", "compare_activations", "residual_outliers",
    "SensitivityResult", "groups_of", "layer_sensitivity",
    "SweepResult", "cache_dir", "sweep",
]  # fmt: skip
