"""Model-level quantization: one entry point, ``quantize_(model, config)``, for weight-only recipes
(:class:`WeightOnlyConfig`; ``quantize_model(m, recipe)`` is its alias) and PTQ / dynamic / QAT /
LLM pipelines.

>>> import qlab
>>> m = qlab.models.load("smollm2-135m")                                  # doctest: +SKIP
>>> report = qlab.quantize_(m, qlab.WeightOnlyConfig(recipe="q4_k_m"))    # doctest: +SKIP
>>> d = qlab.models.load("digits-cnn")                                    # doctest: +SKIP
>>> qlab.quantize_(d, qlab.PTQConfig(weights="int8", activations="int8"), calibration=batches)  # doctest: +SKIP
"""

from . import calibration, mixed, recipes, sparsity
from .api import PipelineReport, quantize_, register_method
from .configs import (
    AWQConfig,
    DynamicConfig,
    GPTQConfig,
    LLMInt8Config,
    PTQConfig,
    QATConfig,
    QuantConfig,
    SmoothQuantConfig,
    WeightOnlyConfig,
)
from .hqq import HQQConfig
from .imatrix import IMatrix, collect_imatrix, load_imatrix, save_imatrix
from .mixed import MixedResult, mixed_precision, uniform_bytes, uniform_within
from .model import LayerReport, QuantReport, WeightSnapshot, quantize_model
from .recipes import resolve_recipe
from .rotation import RotationConfig
from .sparsity import SparsityReport, activation_norms, nm_mask, sparsify_model, wanda_score

__all__ = [
    "quantize_model", "QuantReport", "LayerReport", "WeightSnapshot", "calibration", "recipes", "resolve_recipe",
    "quantize_", "register_method", "PipelineReport", "QuantConfig", "PTQConfig", "DynamicConfig",
    "QATConfig", "LLMInt8Config", "SmoothQuantConfig", "AWQConfig", "GPTQConfig", "WeightOnlyConfig", "HQQConfig",
    "RotationConfig",
    "mixed", "mixed_precision", "MixedResult", "uniform_bytes", "uniform_within",
    "IMatrix", "collect_imatrix", "load_imatrix", "save_imatrix",
    "sparsity", "sparsify_model", "SparsityReport", "nm_mask", "wanda_score", "activation_norms",
]
