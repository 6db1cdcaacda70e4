"""N:M structured sparsity (2:4 by default) on Linear weights, alone or followed by quantization.

**2:4 sparsity** (NVIDIA Ampere sparse tensor cores; Mishra et al. 2021, "Accelerating Sparse
Deep Neural Networks", arXiv:2104.08378): in every group of 4 consecutive weights along the
*input* dimension of a row (``W[o, 4k:4k+4]`` of a ``Linear`` weight ``(out, in)``), 2 are zero.
The hardware stores the 2 kept values of each group and, per kept value, its 2-bit position in
the group, and skips the zeros in the matrix multiply (up to 2x math throughput).

**Which two to keep** -- the score of each weight; the two largest per group stay:

* ``"magnitude"``: ``|W_ij|``;
* ``"wanda"`` (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language
  Models", arXiv:2306.11695): ``|W_ij| * ||X_j||_2``, where ``||X_j||_2`` is the L2 norm of input
  feature ``j`` over all calibration tokens. A small weight on a loud input channel (LLMs'
  outlier features) matters more than a large weight on a quiet one. The norms come from one
  pass of the *dense* model over :func:`qlab.eval.calibration_text` (the Wanda code recomputes
  each block's inputs after pruning the blocks before it; the one-pass form is the paper's
  formula and is what is tested here).

**Storage** of a pruned ``(out, in)`` weight in the compressed layout: the kept values as an
``(out, in/2)`` matrix in the value format, plus 2 bits of index per kept value::

    bytes = nbytes(values (out, in*n/m) in fmt) + ceil(out * in*n/m * ceil(log2 m) / 8)
          = nbytes(values) + out*in/8                     for 2:4

(fp16 values: ``2*out*in/2 + out*in/8 = 0.5625 x`` the dense fp16 bytes.) With a quantization
format, the *kept values* are what is quantized (row length ``in/2``, llama.cpp's row-length
fallback applies as for dense weights); the pruned positions are not stored, so they stay exactly
zero after decoding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import formats
from ..core.metrics import weight_error
from ..core.model import ModelLike
from ..core.report import Report
from .model import quantize_model
from .recipes import KEEP, fallback, spec, targets, torch_module

SCORINGS = ("magnitude", "wanda")
DEFAULT_INCLUDE = "*layers.*"  # the transformer blocks' Linear layers, not the embedding / head


def _check_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n < m):
        raise ValueError(f"N:M sparsity needs integers 0 < n < m, got n={n!r}, m={m!r}")


def nm_mask(score: Any, n: int = 2, m: int = 4) -> np.ndarray:
    """Boolean mask keeping the ``n`` largest scores in every group of ``m`` consecutive values of
    the last axis (ties: the earlier position wins, a stable sort)."""
    _check_nm(n, m)
    s = np.asarray(score.detach().cpu().numpy() if isinstance(score, torch.Tensor) else score, dtype=np.float64)
    if s.ndim == 0 or s.shape[-1] % m:
        raise ValueError(f"row length {s.shape[-1] if s.ndim else 0} is not a multiple of m={m} for {n}:{m} sparsity")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    g = s.reshape(-1, m)
    order = np.argsort(-g, axis=1, kind="stable")[:, :n]  # largest first, stable for ties
    keep = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=1)
    return keep.reshape(s.shape)


def wanda_score(w: Any, x_norm: Any) -> np.ndarray:
    """``|W_ij| * ||X_j||_2`` (Wanda) for a weight ``(out, in)`` and input-feature norms ``(in,)``."""
    w = formats.base.as_float32(w)
    x = np.asarray(x_norm, dtype=np.float64)
    if w.ndim != 2 or x.shape != (w.shape[1],):
        raise ValueError(f"wanda needs a weight (out, in) and norms (in,), got {w.shape} and {x.shape}")
    return np.abs(w).astype(np.float64) * x[None, :]


def activation_norms(
    model: ModelLike, text: str | None = None, include: str | Iterable[str] = DEFAULT_INCLUDE,
    seq_len: int = 512, n_seq: int = 16, progress: bool = False,
) -> dict[str, np.ndarray]:  # fmt: skip
    """``{Linear name: ||X_j||_2 over every calibration token}`` (float64, one per input feature)
    from one pass of the model over ``n_seq`` windows of ``seq_len`` tokens of ``text`` (default
    :func:`qlab.eval.calibration_text`)."""
    from .calibration import batches, feed

    if text is None:
        from ..eval import calibration_text

        text = calibration_text()
    mod = torch_module(model)
    pats = [include] if isinstance(include, str) else list(include)
    sq: dict[str, torch.Tensor] = {}
    hooks = []
    for t in targets(mod):
        if isinstance(t.module, torch.nn.Linear) and any(t.matches(p) for p in pats):

            def hook(_mod: Any, inp: tuple[torch.Tensor, ...], _out: Any, name: str = t.name) -> None:
                x = inp[0].detach().reshape(-1, inp[0].shape[-1]).double()
                sq[name] = sq.get(name, 0) + (x * x).sum(0)

            hooks.append(t.module.register_forward_hook(hook))
    try:
        feed(model, batches(text, model, seq_len=seq_len)[:n_seq], progress=progress, desc="activation norms")
    finally:
        for h in hooks:
            h.remove()
    return {k: v.sqrt().numpy() for k, v in sq.items()}


def compressed_bytes(shape: tuple[int, int], fmt: Any = None, n: int = 2, m: int = 4) -> tuple[int, str]:
    """Bytes of an ``n:m``-pruned ``(out, in)`` weight stored compressed (formula in the module
    docstring) and the value format used (after the row-length fallback); ``fmt=None`` = float32."""
    from .mixed import tensor_bytes

    out, k = shape
    kept = (out, k * n // m)
    used, _ = fallback(spec(fmt), kept[1])
    index = -(-out * kept[1] * math.ceil(math.log2(m)) // 8)
    return tensor_bytes(used, kept) + index, used.label()


def prune_weight(
    w: Any, fmt: Any = None, score: Any = None, n: int = 2, m: int = 4
) -> tuple[np.ndarray, np.ndarray, int, str]:
    """Prune ``w (out, in)`` to n:m by ``score`` (default ``|w|``), then quantize the kept values with
    ``fmt`` (None: keep float32). Returns (decoded weight with exact zeros, mask, bytes, format used)."""
    _check_nm(n, m)
    w = formats.base.as_float32(w)
    if w.ndim != 2:
        raise ValueError(f"prune_weight needs a 2-D weight (out, in), got shape {w.shape}")
    mask = nm_mask(np.abs(w) if score is None else score, n, m)
    if mask.shape != w.shape:
        raise ValueError(f"score shape {mask.shape} differs from the weight's {w.shape}")
    nbytes, used = compressed_bytes(w.shape, fmt, n, m)
    kept = w[mask].reshape(w.shape[0], -1)  # row-major: each row's kept values in order
    if used != KEEP:
        s = spec(used)
        kept = formats.get(s).decode(formats.get(s).encode(kept, **s.options))
    y = np.zeros_like(w)
    y[mask] = kept.ravel()
    return y, mask, nbytes, used


@dataclass
class SparseLayer:
    name: str
    shape: tuple[int, ...]
    params: int
    used: str
    nbytes: int
    sparsity: float
    sqnr_db: float
    mse: float


@dataclass
class SparsityReport(Report):
    """Per-layer rows (pruned layers, then any dense ones) and whole-model sizes."""

    layers: list[Any]
    other_params: int = 0
    scoring: str = ""
    pattern: str = "2:4"
    fmt: str = "f32"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over the pruned layers' weights."""
        rows = [r for r in self.layers if isinstance(r, SparseLayer)]
        return sum(r.sparsity * r.params for r in rows) / max(1, sum(r.params for r in rows))

    def summary(self) -> str:
        return (f"{self.pattern} {self.scoring} + {self.fmt}: {self.total_bytes / 1e6:.2f} MB "
                f"({self.bits_per_weight:.3f} bits/weight), sparsity {self.sparsity:.3f} of pruned layers")  # fmt: skip

    COLUMNS = (("name", "tensor", None), ("used", "values", None), ("sparsity", "sparsity", ".3f"),
               ("nbytes", "bytes", ",d"), ("sqnr_db", "SQNR dB", ".2f"))  # fmt: skip
    COUNT_MORE = False

    def table_layers(self) -> list[Any]:
        """The pruned layers (dense ones are in ``layers`` for the sizes only)."""
        return [r for r in self.layers if isinstance(r, SparseLayer)]

    def row(self, layer: Any) -> dict[str, Any]:
        return vars(layer)


def sparsify_model(
    model: ModelLike,
    scoring: str = "magnitude",
    fmt: Any = None,
    *,
    n: int = 2,
    m: int = 4,
    include: str | Iterable[str] = DEFAULT_INCLUDE,
    norms: dict[str, np.ndarray] | None = None,
    dense: Any = "same",
    progress: bool = False,
    **norm_kwargs: Any,
) -> SparsityReport:
    """Prune the Linear layers matching ``include`` to ``n:m`` in place (``scoring`` "magnitude" or
    "wanda"), quantize their kept values with ``fmt`` (None: float32), and quantize the other
    weight targets (embedding, head) densely with ``dense`` ("same": ``fmt``; None: keep).

    ``norms``: precomputed :func:`activation_norms` for Wanda (measured here when None, with
    ``norm_kwargs`` passed on). The report's bytes use the compressed layout of the module docstring.
    """
    from tqdm.auto import tqdm

    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; valid: {', '.join(SCORINGS)}")
    _check_nm(n, m)
    mod = torch_module(model)
    pats = [include] if isinstance(include, str) else list(include)
    chosen = [t for t in targets(mod) if isinstance(t.module, torch.nn.Linear) and any(t.matches(p) for p in pats)]
    if not chosen:
        raise ValueError(f"no Linear weight matches include={include!r}")
    bad = [f"{t.name} ({t.shape[1]})" for t in chosen if t.shape[1] % m]
    if bad:
        raise ValueError(f"row length is not a multiple of m={m} for {len(bad)} layer(s): {', '.join(bad[:3])}")
    if scoring == "wanda" and norms is None:
        norms = activation_norms(model, include=[t.name for t in chosen], progress=progress, **norm_kwargs)
    rows: list[Any] = []
    for t in tqdm(chosen, desc=f"{n}:{m} {scoring}", disable=not progress, leave=False):
        w = formats.base.as_float32(t.weight.detach())
        score = wanda_score(w, norms[t.name]) if scoring == "wanda" else None
        y, mask, nbytes, used = prune_weight(w, fmt, score, n, m)
        sqnr, mse, _ = weight_error(w, y)
        with torch.no_grad():
            t.weight.copy_(torch.from_numpy(y))
        rows.append(SparseLayer(t.name, t.shape, t.numel, used, nbytes, float((y == 0).mean()), sqnr, mse))
    names = {t.name for t in chosen}
    rest = [t.name for t in targets(mod) if t.name not in names]
    other = sum(p.numel() for p in mod.parameters() if id(p) not in {id(t.weight) for t in targets(mod)})
    if rest:
        d = fmt if dense == "same" else dense
        rep = quantize_model(model, d if d is not None else KEEP, include=rest)
        rows += [r for r in rep.layers if r.name in set(rest)]
    label = spec(fmt).label() if fmt is not None else "f32"
    return SparsityReport(rows, other, scoring, f"{n}:{m}", label)


__all__ = ["nm_mask", "wanda_score", "activation_norms", "compressed_bytes", "prune_weight", "sparsify_model",
           "SparsityReport", "SparseLayer", "SCORINGS"]  # fmt: skip
