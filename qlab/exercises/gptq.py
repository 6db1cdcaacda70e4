"""Exercises of lesson 10: one GPTQ column step, and AWQ's activation-aware scales."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..quantize.awq import awq_scales as _awq_scales
from ..quantize.gptq import quantize_column
from ._core import Case, Exercise, allclose, exercise


def gptq_step(w: np.ndarray, u: np.ndarray, scale: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """Quantize column 0 of ``w`` (rows, k) onto the asymmetric ``bits``-bit grid (per-row ``scale``
    and ``zero``), then spread its error over columns 1.. with the Cholesky row ``u`` (k,):
    ``err = (w0 - q0) / u[0]``, ``w[:, 1:] -= outer(err, u[1:])``. Returns the new block (float32)."""
    W = torch.from_numpy(np.array(w, dtype=np.float32))
    uu = torch.from_numpy(np.asarray(u, dtype=np.float32))
    _, deq = quantize_column(W[:, 0], torch.from_numpy(np.asarray(scale, np.float32)),
                             torch.from_numpy(np.asarray(zero, np.float32)), 0, 2**bits - 1)  # fmt: skip
    err = (W[:, 0] - deq) / uu[0]
    W[:, 1:] -= torch.outer(err, uu[1:])
    W[:, 0] = deq
    return W.numpy()


def awq_scales(abs_mean: np.ndarray, alpha: float) -> np.ndarray:
    """AWQ's per-channel scales ``s = mean|x|^alpha`` (clamped at 1e-4), divided by ``sqrt(max s * min s)``."""
    return _awq_scales(torch.from_numpy(np.asarray(abs_mean, np.float32)), alpha).numpy()


def _gptq_cases() -> Iterator[Case]:
    rng = np.random.default_rng(0)
    for rows, k, bits in ((4, 6, 4), (16, 32, 3), (8, 8, 4)):
        w = rng.normal(scale=0.05, size=(rows, k)).astype(np.float32)
        a = rng.normal(size=(4 * k, k)).astype(np.float32)
        h = a.T @ a / (4 * k) + 0.01 * np.eye(k, dtype=np.float32)
        u = np.linalg.cholesky(np.linalg.inv(h.astype(np.float64))).T[0].astype(np.float32)  # row 0 of upper factor
        lo, hi = np.minimum(w.min(1), 0), np.maximum(w.max(1), 0)
        scale = ((hi - lo) / (2**bits - 1)).astype(np.float32)
        zero = np.clip(-np.rint(lo / scale), 0, 2**bits - 1).astype(np.float32)
        yield (w, u, scale, zero, bits), {}


def _awq_cases() -> Iterator[Case]:
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_t(3, size=64)).astype(np.float32)
    for alpha in (0.0, 0.3, 0.5, 0.85):
        yield (x, alpha), {}
    yield (np.array([0.0, 1e-9, 0.5, 2.0, 40.0], np.float32), 0.5), {}  # the clamp matters here


exercise(Exercise(
    name="gptq_column_step",
    lesson=10,
    prompt=("write gptq_step(w, u, scale, zero, bits) -> the block after one GPTQ step: round column 0 of w "
            "(rows, k) to the asymmetric grid, q = (clip(rint(w0 / scale) + zero, 0, 2**bits - 1) - zero) * scale, "
            "then err = (w0 - q) / u[0] and w[:, 1:] -= outer(err, u[1:]); column 0 becomes q. float32."),
    hint=("the error is divided by u[0] (the diagonal of the Cholesky factor of H^-1) before it is spread, and "
          "the update SUBTRACTS err times u[1:] from every later column; keep column 0 = the rounded value."),
    reference=gptq_step,
    cases=_gptq_cases,
    compare=allclose(rtol=1e-5, atol=1e-6),
))  # fmt: skip

exercise(Exercise(
    name="awq_scales",
    lesson=10,
    prompt=("write awq_scales(abs_mean, alpha) -> s: s = abs_mean ** alpha, clamped below at 1e-4, then divided "
            "by sqrt(s.max() * s.min()) so the scales are centred around 1 (float32)."),
    hint="clamp with np.maximum(s, 1e-4) BEFORE normalising; the normaliser is the geometric mean of max and min.",
    reference=awq_scales,
    cases=_awq_cases,
    compare=allclose(rtol=1e-5),
))  # fmt: skip

__all__ = ["gptq_step", "awq_scales"]
