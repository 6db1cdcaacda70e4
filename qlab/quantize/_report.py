"""What a pipeline (``qlab.quantize_``) did, per layer: formats, weight bytes and errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..core.report import Report


@dataclass
class LayerQuant:
    """One Linear/Conv layer after quantization.

    ``nbytes``: the weight's exact storage (``Encoded.nbytes``: codes, scales, metadata) or 4 per
    value when kept in float32. ``sqnr_db``/``mse``/``max_abs_err``: weight error. ``act_lo``/
    ``act_hi``: the static activation range (per channel: the widest), ``act_sqnr_db``: the input
    quantization error measured on one calibration batch (``None`` when not measured).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    params: int
    weights: str
    activations: str
    nbytes: int
    sqnr_db: float = float("inf")
    mse: float = 0.0
    max_abs_err: float = 0.0
    observer: str = ""
    act_lo: float | None = None
    act_hi: float | None = None
    act_sqnr_db: float | None = None
    note: str = ""

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes / self.params if self.params else float("nan")


@dataclass
class PipelineReport(Report):
    """Per-layer rows plus whole-model sizes (other parameters -- biases, norms, embeddings -- as float32)."""

    method: str
    layers: list[LayerQuant]
    other_params: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


    COLUMNS = (
        ("name", "layer", None), ("shape", "shape", None), ("weights", "weights", None), ("bpw", "bits/w", ".3f"),
        ("sqnr_db", "W SQNR dB", ".2f"), ("activations", "activations", None), ("range", "act range", None),
        ("act_sqnr_db", "A SQNR dB", ".2f"), ("note", "note", None),
    )  # fmt: skip

    def summary(self) -> str:
        return (
            f"{self.method}: {len(self.layers)} layer(s), {self.total_bytes / 1e6:.3f} MB "
            f"({self.bits_per_weight:.3f} bits/param; fp32 {self.fp32_bytes / 1e6:.3f} MB)"
        )

    def row(self, layer: LayerQuant) -> dict[str, Any]:
        r = layer
        return {**super().row(r), "range": None if r.act_lo is None else f"[{r.act_lo:.3g}, {r.act_hi:.3g}]"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": self.config,
            "total_bytes": self.total_bytes,
            "fp32_bytes": self.fp32_bytes,
            "bits_per_weight": self.bits_per_weight,
            "layers": [{**asdict(r), "shape": list(r.shape)} for r in self.layers],
            "extra": {k: v for k, v in self.extra.items() if _jsonable(v)},
        }

def _jsonable(v: Any) -> bool:
    return isinstance(v, str | int | float | bool | list | dict | tuple | type(None) | np.floating | np.integer)


__all__ = ["LayerQuant", "PipelineReport"]
