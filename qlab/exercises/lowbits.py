"""Exercises of lesson 11: BitNet b1.58 ternary quantization, and a 2:4 sparsity mask."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..analysis.lowbits import ternary_absmean
from ..quantize.sparsity import nm_mask
from ._core import Case, Exercise, allclose, exercise


def ternary_weight(w: np.ndarray) -> np.ndarray:
    """The weight BitNet b1.58 multiplies with: ``gamma * RoundClip(w / (gamma + 1e-5), -1, 1)``."""
    codes, gamma = ternary_absmean(w)
    return codes.astype(np.float32) * np.float32(gamma)


def prune_2_4(w: np.ndarray) -> np.ndarray:
    """``w`` with the two smallest |w| of every 4 consecutive values of a row set to zero."""
    w = np.asarray(w, dtype=np.float32)
    return np.where(nm_mask(np.abs(w)), w, np.float32(0))


def _weights() -> Iterator[Case]:
    from ..models import minilm_weights

    rng = np.random.default_rng(0)
    yield (rng.normal(scale=0.02, size=(8, 16)).astype(np.float32),), {}
    yield (minilm_weights("encoder.layer.0.attention.self.query.weight")[:64],), {}
    yield (rng.laplace(size=(4, 32)).astype(np.float32),), {}


def _ternary_compare(got: Any, expected: Any) -> str | None:
    why = allclose(rtol=1e-6)(got, expected)
    if why is None:
        return None
    g = np.asarray(got, dtype=np.float64)
    levels = np.unique(np.round(g / max(np.abs(g).max(), 1e-30), 6))
    if len(levels) > 3:
        return f"{why} -- your result has {len(levels)} distinct values; a ternary weight has at most 3"
    return why


exercise(Exercise(
    name="ternary_absmean",
    lesson=11,
    prompt=("write ternary(w) -> the weight BitNet b1.58 computes with: gamma = mean(|w|) over the whole "
            "tensor, codes = clip(round(w / (gamma + 1e-5)), -1, 1), return codes * gamma (float32)."),
    hint=("the scale is the MEAN of |w| (absmean), not the max; round half to even (np.rint), then clip "
          "to [-1, 1]; keep everything float32."),
    reference=ternary_weight,
    cases=_weights,
    compare=_ternary_compare,
))  # fmt: skip

exercise(Exercise(
    name="prune_2_4",
    lesson=11,
    prompt=("write prune_2_4(w) -> w with 2:4 structured sparsity along each row: in every group of 4 "
            "consecutive values (w[:, 4k:4k+4]) keep the two with the largest |w| and set the other two to 0."),
    hint=("reshape to (-1, 4), rank by np.abs (not by the signed value), keep the top two of each group "
          "(np.argsort(-abs, kind='stable')[:, :2]), and reshape back."),
    reference=prune_2_4,
    cases=_weights,
))  # fmt: skip
