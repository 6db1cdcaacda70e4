"""HQQ, Half-Quadratic Quantization (Badri & Shaji, 2023, "Half-Quadratic Quantization of Large
Machine Learning Models", https://mobiusml.github.io/hqq_blog/): a calibration-free optimizer of
the zero-point of an affine integer grid.

For each group of ``group_size`` consecutive values of a weight row, HQQ starts from the min-max
grid (``q = round(w * s' + z)``, ``s' = (2**b - 1) / (max - min)``, ``z = -min * s'``) and
minimises the sparsity-promoting error ``||w - (q - z) / s'||_p^p`` (``p = lp_norm < 1``: a few
large errors are cheaper than many small ones) by half-quadratic splitting: an auxiliary error
``e`` is updated by the generalized soft-threshold (proximal operator of ``|.|^p``)

    e = shrink_p(w - w_r, beta) = sign(x) * relu(|x| - |x|^(p-1) / beta),  x = w - w_r

and the zero-point by the closed-form least-squares step ``z = mean(q - (w - e) * s')`` per
group. Iterations stop at ``iters`` or as soon as the mean absolute error ``mean|w - w_r|`` (over
the whole tensor) stops decreasing.

This follows the ``hqq`` package (0.2.x, ``hqq/core/optimize.py``,
``optimize_weights_proximal_legacy``, the default ``Quantizer.optimize_weights``), re-implemented
and checked against it code for code (``tests/quantize/test_hqq.py``), with its defaults and quirks:

* ``lp_norm=0.7``, ``beta=10``, ``iters=20``; ``kappa`` (1.01) is *not* applied by the default
  solver (beta stays constant; only the experimental ``_v2`` grows it);
* the scale is not optimized (it stays min-max); the zero-point is a float, never rounded
  (``round_zero=False``), so it is stored as a 16-bit float, like the scale;
* a group whose range is ``<= 1e-4`` gets ``s' = 1``; ``s'`` is clamped at ``2e4``;
* on early stop the zero-point of the step that did *not* improve is the one returned (the
  package updates ``z`` before testing the error);
* groups: ``axis=1`` of the package (consecutive values of a row, qlab's group layout).

Storage (``nbytes``): codes packed at ``bits`` bits plus, per group, the scale and the float
zero-point as float16 (``meta_dtype="float16"``, what ``HQQLinear`` keeps with a float16 compute
dtype: ``bits + 32 / group_size`` bits per weight) or float32. The dequantized weight is
``(q - z) * s`` with ``s = 1 / s'``, computed in float32 from the stored (rounded) ``s`` and ``z``.
``qlab.quantize_(m, HQQConfig(weights="int4", group_size=64))`` runs it on every Linear chosen
by ``include``/``exclude``; no calibration data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .. import formats
from ..core.metrics import error_stats
from ..core.model import ModelLike
from . import _layers as L
from ._report import LayerQuant, PipelineReport
from .config_base import QuantConfig, _positive

META_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class HQQConfig(QuantConfig):
    """HQQ weight-only quantization (see :mod:`qlab.quantize.hqq`): ``weights`` an integer format
    (int1..int8; the grid is the unsigned ``[0, 2**bits - 1]``), ``group_size`` consecutive values
    per scale/zero (required), the solver's ``lp_norm``, ``beta``, ``iters``, and ``meta_dtype``
    of the stored scale and zero-point."""

    weights: str | None = "int4"
    group_size: int | None = 64
    lp_norm: float = 0.7
    beta: float = 10.0
    iters: int = 20
    meta_dtype: str = "float16"
    progress: bool = False

    method_module: ClassVar[str] = "qlab.quantize.hqq"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weights is None or formats.get(self.weights).family != "integer":
            raise ValueError(f"HQQ rounds onto an integer grid; weights must be int1..int8, got {self.weights!r}")
        if self.activations is not None:
            raise ValueError(f"HQQ is weight-only; activations must be None, got {self.activations!r}")
        if self.group_size is None:
            raise ValueError("HQQ needs group_size (values per scale/zero-point), got None")
        if not 0 < self.lp_norm <= 1:
            raise ValueError(f"lp_norm must be in (0, 1], got {self.lp_norm!r}")
        _positive(self.beta, "beta", float)
        _positive(self.iters, "iters")
        if self.meta_dtype not in META_DTYPES:
            raise ValueError(f"meta_dtype must be one of {sorted(META_DTYPES)}, got {self.meta_dtype!r}")

    @property
    def bits(self) -> int:
        return int(formats.get(str(self.weights)).bits)

    def label(self) -> str:
        return f"HQQ int{self.bits} g{self.group_size}"


@dataclass
class HQQResult:
    """``weight`` (dequantized, the input's shape), ``codes`` (same shape, float), per-group
    ``scale`` and ``zero`` ``(rows, groups)`` (dequantization: ``(q - zero) * scale``), the
    number of solver steps run, and the exact storage ``nbytes``."""

    weight: torch.Tensor
    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    steps: int
    nbytes: int


def shrink_lp(x: torch.Tensor, beta: float, lp_norm: float) -> torch.Tensor:
    """Generalized soft-thresholding, the proximal operator of ``|x|^p / beta``:
    ``sign(x) * relu(|x| - |x|^(p-1) / beta)`` (``p = 1``: ordinary soft-thresholding)."""
    a = x.abs()
    t = a - 1.0 / beta if lp_norm == 1 else a - (1.0 / beta) * a.pow(lp_norm - 1)
    return torch.sign(x) * t.clamp_min(0.0)


def hqq_quantize(
    w: torch.Tensor,
    bits: int,
    group_size: int,
    lp_norm: float = 0.7,
    beta: float = 10.0,
    iters: int = 20,
    meta_dtype: str = "float16",
) -> HQQResult:
    """HQQ of a weight ``w`` ``(rows, cols)`` in groups of ``group_size`` consecutive values of a
    row (float32 on CPU; see the module docstring). ``meta_dtype="float32"`` keeps the package's
    float32 scale and zero-point (the test compares those bit for bit)."""
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise ValueError(f"w must be a 2-D tensor (rows, cols), got {getattr(w, 'shape', type(w))}")
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an int in 1..8, got {bits!r}")
    if not isinstance(group_size, int) or group_size <= 0 or w.shape[1] % group_size:
        raise ValueError(f"group_size must be a positive divisor of the row length {w.shape[1]}, got {group_size!r}")
    if meta_dtype not in META_DTYPES:
        raise ValueError(f"meta_dtype must be one of {sorted(META_DTYPES)}, got {meta_dtype!r}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("w has NaN/Inf values")
    rows, cols = w.shape
    qmax = float(2**bits - 1)
    W = w.detach().float().reshape(-1, group_size)
    lo, hi = W.min(dim=1, keepdim=True)[0], W.max(dim=1, keepdim=True)[0]
    denom = hi - lo
    inv = qmax / denom
    inv = torch.where(denom.abs() <= 1e-4, torch.ones_like(inv), inv).clamp(max=2e4)
    zero = -lo * inv
    best = torch.tensor(float("inf"))
    steps = 0
    for _ in range(iters):
        steps += 1
        Wq = torch.round(W * inv + zero).clamp(0.0, qmax)
        Wr = (Wq - zero) / inv
        We = shrink_lp(W - Wr, beta, lp_norm)
        zero = torch.mean(Wq - (W - We) * inv, dim=1, keepdim=True)
        err = torch.abs(W - Wr).mean()
        if err < best:
            best = err
        else:
            break
    codes = torch.round(W * inv + zero).clamp(0.0, qmax)
    dt = META_DTYPES[meta_dtype]
    scale = (1.0 / inv).to(dt).float()
    zero = zero.to(dt).float()
    deq = ((codes - zero) * scale).reshape(rows, cols)
    ng = cols // group_size
    nbytes = -(-rows * cols * bits // 8) + 2 * rows * ng * (2 if dt == torch.float16 else 4)
    return HQQResult(deq, codes.reshape(rows, cols), scale.view(rows, ng), zero.view(rows, ng), steps, int(nbytes))


def run_hqq(model: ModelLike, config: HQQConfig, calibration: Any = None) -> PipelineReport:
    """HQQ on every Linear chosen by ``config.include``/``exclude`` (what ``qlab.quantize_`` runs
    for an :class:`HQQConfig`; no calibration: ``calibration`` must be ``None``); weights replaced in place."""
    if not isinstance(config, HQQConfig):
        raise TypeError(f"run_hqq takes an HQQConfig, got {type(config).__name__}")
    if calibration is not None:
        raise ValueError("HQQ uses no calibration data; pass calibration=None")
    from tqdm.auto import tqdm

    L.check_model(model)
    layers = [la for la in L.find_layers(model, config.include, config.exclude) if la.kind == "Linear"]
    if not layers:
        raise ValueError(f"include={config.include!r} / exclude={config.exclude!r} leave no Linear to quantize")
    gs = int(config.group_size or 0)
    for la in layers:
        if la.row_length % gs:
            raise ValueError(f"{la.name}: group_size={gs} does not divide its rows of {la.row_length} values; "
                             f"exclude it (exclude=[{la.name!r}])")  # fmt: skip
        if not bool(torch.isfinite(la.module.weight).all()):
            raise ValueError(f"{la.name}: weight has NaN/Inf values")
    t0 = time.perf_counter()
    rows: list[LayerQuant] = []
    for la in tqdm(layers, desc="HQQ", disable=not config.progress, leave=False):
        w = la.module.weight
        orig = w.detach().float().clone()
        res = hqq_quantize(orig, config.bits, gs, config.lp_norm, config.beta, config.iters, config.meta_dtype)
        with torch.no_grad():
            w.copy_(res.weight.to(w.dtype))
        st = error_stats(orig.numpy(), res.weight.numpy())
        rows.append(L.layer_report(la, weights=config.label(), activations="f32", nbytes=res.nbytes,
                                   sqnr_db=st["sqnr_db"], mse=st["mse"], max_abs_err=st["max_abs_err"],
                                   note=f"hqq {res.steps} steps"))  # fmt: skip
    L.mark(model, config.label())
    return PipelineReport(config.label(), rows, L.other_params(model, layers), config.to_dict(),
                          {"seconds": time.perf_counter() - t0})  # fmt: skip


def _register() -> None:
    from .api import register_method

    register_method(HQQConfig, run_hqq)


_register()

__all__ = ["HQQConfig", "HQQResult", "shrink_lp", "hqq_quantize", "run_hqq"]
