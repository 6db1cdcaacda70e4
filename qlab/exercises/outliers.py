"""Lesson 6 exercises: LLM.int8()'s outlier columns and SmoothQuant's smoothing factors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ._core import Case, Exercise, allclose, exercise


def _outlier_columns(x: np.ndarray, threshold: float = 6.0) -> np.ndarray:
    """Reference: sorted indices of the columns (last axis) holding some ``|x| >= threshold``."""
    from ..backends.bitsandbytes.simulate import outlier_columns

    return outlier_columns(torch.from_numpy(np.ascontiguousarray(x, np.float32)), threshold)


def _outlier_cases() -> Iterator[Case]:
    rng = np.random.default_rng(6)
    for shape, thr in (((8, 16), 6.0), ((32, 64), 6.0), ((4, 10, 48), 3.0), ((64, 96), 8.0)):
        x = rng.standard_normal(shape).astype(np.float32)
        cols = rng.choice(shape[-1], 3, replace=False)
        x[..., cols] *= 10  # a few massive channels, as in an LLM's activations
        x = np.where(np.abs(np.abs(x) - thr) < 0.01, x * 1.01, x)  # no value within fp16 rounding of thr
        yield (x,), {"threshold": thr}


def _smoothing_factors(act_absmax: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """Reference: SmoothQuant's eq. 4 for one weight (the maxima clamped at 1e-5)."""
    from ..quantize.smoothquant import smoothing_factors

    return smoothing_factors(act_absmax, w, alpha).numpy()


def _smoothing_cases() -> Iterator[Case]:
    rng = np.random.default_rng(60)
    for n_in, n_out, alpha in ((16, 8, 0.5), (64, 32, 0.25), (96, 48, 0.75), (32, 16, 0.0), (32, 16, 1.0)):
        a = np.abs(rng.standard_normal(n_in)).astype(np.float32) * 2 + 0.1
        a[rng.choice(n_in, 2, replace=False)] *= 50
        w = (rng.standard_normal((n_out, n_in)) * 0.05).astype(np.float32)
        yield (a, w, alpha), {}


def _same_columns(got: Any, expected: Any) -> str | None:
    g = np.asarray(got).astype(np.int64).ravel()
    e = np.asarray(expected).astype(np.int64).ravel()
    if g.shape == e.shape and (g == e).all():
        return None
    return f"got columns {g.tolist()[:12]}, expected {e.tolist()[:12]} (sorted indices, each once)"


OUTLIER_COLUMNS = exercise(Exercise(
    name="outlier_columns",
    lesson=6,
    prompt=("write outlier_columns(x, threshold=6.0) -> the sorted indices j of the last axis (the input "
            "features) for which SOME value x[..., j] has |x| >= threshold: the columns LLM.int8() keeps in "
            "16-bit. x may have any number of leading axes (tokens, batch)."),
    hint=("flatten the leading axes (x.reshape(-1, x.shape[-1])), test np.abs(x) >= threshold, reduce with "
          ".any(axis=0) over tokens (not over channels), then np.flatnonzero."),
    reference=_outlier_columns,
    cases=_outlier_cases,
    compare=_same_columns,
))  # fmt: skip

SMOOTHING_FACTORS = exercise(Exercise(
    name="smoothing_factors",
    lesson=6,
    prompt=("write smoothing_factors(act_absmax, w, alpha) -> s with s[j] = act_absmax[j]**alpha / "
            "max_i |w[i, j]|**(1 - alpha) (SmoothQuant, eq. 4). act_absmax: (in,) max |x| per input channel; "
            "w: (out, in) weight of the Linear. Smoothing divides x[:, j] by s[j] and multiplies w[:, j] by s[j]."),
    hint=("the weight maximum is per INPUT channel, i.e. over the rows: np.abs(w).max(axis=0); the exponents are "
          "alpha for the activations and 1 - alpha for the weights."),
    reference=_smoothing_factors,
    cases=_smoothing_cases,
    compare=allclose(rtol=1e-4),
))  # fmt: skip

__all__ = ["OUTLIER_COLUMNS", "SMOOTHING_FACTORS"]
