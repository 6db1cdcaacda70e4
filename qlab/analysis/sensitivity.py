"""Per-layer sensitivity (implemented in :mod:`qlab.quantize.sensitivity`, which mixed precision uses)."""

from ..quantize.sensitivity import SensitivityResult, groups_of, layer_sensitivity

__all__ = ["SensitivityResult", "groups_of", "layer_sensitivity"]
