"""Matrix decomposition of weights: truncated SVD, and low-rank compensation of quantization error.

* **Truncated SVD** (Eckart & Young, 1936): the best rank-``r`` approximation of ``W`` in the
  Frobenius (and spectral) norm is ``U_r diag(s_r) V_r^T``; its squared error is the sum of the
  discarded squared singular values. Stored as two factors ``L = U_r diag(sqrt s_r)`` ``(rows, r)``
  and ``R = diag(sqrt s_r) V_r^T`` ``(r, cols)`` (the square root balances their ranges, which
  matters when they are kept in float16): ``(rows + cols) * r`` values, smaller than the dense
  matrix only when ``r < rows * cols / (rows + cols)``. The rank is given, or the smallest that
  keeps a fraction ``energy`` of ``sum s_i^2``.
* **Low-rank error compensation** (ZeroQuant-V2's LoRC, Yao et al., 2023, arXiv:2303.08302; LQER,
  Zhang et al., 2024, arXiv:2402.02446, without its activation scaling): quantize ``W``, then
  approximate the error ``E = W - Q(W)`` by a rank-``r`` SVD: ``W ~ Q(W) + L R``. Bytes: the
  quantized weight's plus the factors'.

Factors are rounded to ``dtype`` (``"float16"``/``"float32"``) and the reconstruction is computed
in float32 from the rounded factors, so the bytes reported are the ones the error belongs to.
:func:`apply` replaces Linear weights in a model by these reconstructions (simulation: the model
stays dense) and reports the exact bytes per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import formats
from ..core.metrics import error_stats
from ..core.model import ModelLike
from . import _layers as L
from ._report import LayerQuant, PipelineReport
from .recipes import Spec

DTYPES = {"float16": (torch.float16, 2), "float32": (torch.float32, 4)}


@dataclass
class LowRank:
    """Factors ``left`` ``(rows, rank)`` and ``right`` ``(rank, cols)`` (float32 holding values
    rounded to ``dtype``), and their storage ``nbytes``."""

    left: torch.Tensor
    right: torch.Tensor
    dtype: str
    nbytes: int

    @property
    def rank(self) -> int:
        return int(self.left.shape[1])

    def product(self) -> torch.Tensor:
        return self.left @ self.right


def _check(w: Any, what: str = "w") -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise ValueError(f"{what} must be a 2-D tensor (rows, cols), got {getattr(w, 'shape', type(w))}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{what} has NaN/Inf values")
    return w.detach().float()


def rank_for_energy(s: torch.Tensor, energy: float) -> int:
    """Smallest ``r`` with ``sum(s[:r]**2) >= energy * sum(s**2)`` (``s`` descending)."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")
    e = (s.double() ** 2).cumsum(0)
    if e[-1] == 0:
        return 0
    return int(torch.searchsorted(e / e[-1], torch.tensor(energy, dtype=torch.float64) - 1e-12).item()) + 1


def truncated_svd(w: torch.Tensor, rank: int | None = None, energy: float | None = None, dtype: str = "float16") -> LowRank:
    """Rank-``rank`` (or ``energy``-keeping) SVD factors of ``w`` (see the module docstring)."""
    W = _check(w)
    if (rank is None) == (energy is None):
        raise ValueError(f"give exactly one of rank / energy, got rank={rank!r}, energy={energy!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    U, s, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    if rank is None:
        rank = rank_for_energy(s, float(energy))  # type: ignore[arg-type]
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= len(s):
        raise ValueError(f"rank must be an int in 0..{len(s)}, got {rank!r}")
    root = s[:rank].sqrt()
    tdt, size = DTYPES[dtype]
    left = (U[:, :rank] * root).to(tdt).float()
    right = (root[:, None] * Vh[:rank]).to(tdt).float()
    return LowRank(left, right, dtype, size * rank * (W.shape[0] + W.shape[1]))


def eckart_young_error(w: torch.Tensor, rank: int) -> float:
    """``||W - W_r||_F^2`` of the optimal rank-``rank`` approximation: ``sum_{i >= rank} s_i^2``."""
    s = torch.linalg.svdvals(_check(w).double())
    return float((s[rank:] ** 2).sum())


def quantize(w: torch.Tensor, spec: Spec) -> tuple[torch.Tensor, int]:
    """``(decode(encode(w)), nbytes)`` with ``spec``'s format (rows = output channels)."""
    W = _check(w)
    enc = formats.get(spec).encode(W.numpy(), **spec.options)
    return torch.from_numpy(np.asarray(formats.get(spec).decode(enc), dtype=np.float32)).reshape(W.shape), int(enc.nbytes)


@dataclass
class Compensated:
    """``Q(W) + L R``: the reconstruction ``weight``, the quantized part ``quantized``, the
    ``lowrank`` factors of its error, and total bytes (quantized + factors)."""

    weight: torch.Tensor
    quantized: torch.Tensor
    lowrank: LowRank
    nbytes: int


def compensate(w: torch.Tensor, spec: Spec, rank: int, dtype: str = "float16") -> Compensated:
    """LoRC: quantize ``w`` with ``spec``, then add the rank-``rank`` SVD of the error ``w - Q(w)``."""
    W = _check(w)
    q, qbytes = quantize(W, spec)
    lr = truncated_svd(W - q, rank=rank, dtype=dtype)
    return Compensated(q + lr.product(), q, lr, qbytes + lr.nbytes)


def apply(model: ModelLike, include: Any = None, exclude: Any = None, *, spec: Spec | str | None = None,
          rank: int | None = None, energy: float | None = None, dtype: str = "float16") -> PipelineReport:  # fmt: skip
    """Replace every chosen Linear weight by its approximation, in place, and report bytes:

    * ``spec`` only: the quantized weight (bytes of the format);
    * ``rank``/``energy`` only: the truncated SVD (bytes of the factors);
    * both: ``Q(W) + L R`` (LoRC) with ``rank`` (``energy`` is refused: the error's spectrum is flat).
    """
    if spec is None and rank is None and energy is None:
        raise ValueError("give spec (quantization), rank / energy (low rank), or spec and rank (compensation)")
    if spec is not None and energy is not None:
        raise ValueError(f"compensation takes a rank, not energy={energy!r}")
    sp = None if spec is None else (spec if isinstance(spec, Spec) else Spec(str(spec), {}))
    if sp is not None:
        formats.get(sp).options(**sp.options)  # unknown options raise before anything changes
    L.check_model(model)
    layers = [la for la in L.find_layers(model, include, exclude) if la.kind == "Linear"]
    if not layers:
        raise ValueError(f"include={include!r} / exclude={exclude!r} leave no Linear")
    results = []
    for la in layers:  # compute everything first: a refusal leaves the model untouched
        w = la.module.weight.detach().float()
        if sp is None:
            lr = truncated_svd(w, rank=rank, energy=energy, dtype=dtype)
            results.append((lr.product(), lr.nbytes, f"svd r={lr.rank}"))
        elif rank is None:
            q, nb = quantize(w, sp)
            results.append((q, nb, sp.label()))
        else:
            c = compensate(w, sp, rank, dtype)
            results.append((c.weight, c.nbytes, f"{sp.label()} + svd r={rank}"))
    rows: list[LayerQuant] = []
    for la, (new, nbytes, note) in zip(layers, results, strict=True):
        orig = la.module.weight.detach().float().clone()
        with torch.no_grad():
            la.module.weight.copy_(new.to(la.module.weight.dtype))
        st = error_stats(orig.numpy(), new.numpy())
        rows.append(L.layer_report(la, weights=note, activations="f32", nbytes=nbytes, sqnr_db=st["sqnr_db"],
                                   mse=st["mse"], max_abs_err=st["max_abs_err"], note=note))  # fmt: skip
    label = f"lowrank spec={sp.label() if sp else None} rank={rank} energy={energy}"
    L.mark(model, label)
    return PipelineReport(label, rows, L.other_params(model, layers), {"method": "lowrank", "rank": rank,
                          "energy": energy, "dtype": dtype, "spec": sp.label() if sp else None})  # fmt: skip


__all__ = ["LowRank", "Compensated", "rank_for_energy", "truncated_svd", "eckart_young_error", "quantize",
           "compensate", "apply"]  # fmt: skip
