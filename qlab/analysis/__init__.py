"""Measurements for the lessons: quantization error, weight and activation statistics,
per-layer sensitivity and size-vs-accuracy sweeps of whole models."""

from .activations import ChannelStats, capture_activations, compare_activations, residual_outliers
from .chooser import Choice, capstone_rows, choose_format
from .error import compare_formats, error_stats, formats_with_bits, sqnr_db
from .floats import int_vs_float, linear_inputs
from .linear import clip_sweep, db_per_bit, granularity_table, inject_outlier, linear_quantize, sqnr_vs_bits
from .lowbits import error_through_layers, layer_input, low_bits_table, output_error, ternary_absmean
from .sensitivity import SensitivityResult, groups_of, layer_sensitivity
from .size import (
    decode_table,
    effective_bits,
    group_bits,
    matmul_latency,
    measure_bandwidth,
    model_rows,
    parameter_counts,
    size_table,
    stream_seconds,
)  # fmt: skip
from .sweep import SweepResult, cache_dir, sweep
from .weights import tensor_stats, weight_stats, weight_table

__all__ = [
    "compare_formats", "error_stats", "formats_with_bits", "sqnr_db",
    "tensor_stats", "weight_stats", "weight_table",
    "ChannelStats", "capture_activations", "compare_activations", "residual_outliers",
    "SensitivityResult", "groups_of", "layer_sensitivity",
    "SweepResult", "cache_dir", "sweep",
    "parameter_counts", "effective_bits", "group_bits", "size_table", "decode_table", "stream_seconds",
    "measure_bandwidth", "matmul_latency", "model_rows",
    "linear_quantize", "sqnr_vs_bits", "db_per_bit", "clip_sweep", "inject_outlier", "granularity_table",
    "linear_inputs", "int_vs_float",
    "choose_format", "capstone_rows", "Choice",
    "ternary_absmean", "error_through_layers", "low_bits_table", "layer_input", "output_error",
]  # fmt: skip
