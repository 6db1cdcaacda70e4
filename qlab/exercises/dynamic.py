"""Exercises of lesson 08 (dynamic quantization): quantize activations per token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ._core import Case, Exercise, exercise


def quantize_per_token(x: np.ndarray, bits: int) -> np.ndarray:
    """qlab's answer: ``DynamicConfig(granularity="token")``'s run-time quantizer (asymmetric int, one
    range per row of the last axis), fake-quantized (decoded back to float32)."""
    import torch

    from ..quantize.configs import activation_spec
    from ..quantize.fakequant import dynamic_range

    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return dynamic_range(t, activation_spec(f"int{bits}", {}), per_row=True).numpy()


def _cases() -> Iterator[Case]:
    from ..core.calibration import tokenize
    from ..eval import wikitext_sentences
    from ..models import load
    from ..viz.dynamic import real_tokens

    m = load("minilm-l6", progress=False)
    batch = tokenize(m, wikitext_sentences(8))
    x = real_tokens(m, batch, "encoder.layer.0.intermediate.dense")  # real hidden states (tokens, 384)
    rng = np.random.default_rng(0)
    yield (x, 8), {}
    yield (x, 4), {}
    yield (rng.normal(size=(2, 5, 64)).astype(np.float32) * np.float32(3.0), 8), {}  # (batch, seq, features)
    yield (np.abs(rng.normal(size=(6, 32))).astype(np.float32) + 1, 4), {}  # all positive rows


def _compare(got: Any, expected: np.ndarray) -> str | None:
    try:
        g = np.asarray(got.detach().numpy() if hasattr(got, "detach") else got, np.float64)
    except Exception as err:  # noqa: BLE001 - the learner's answer
        return f"could not read the result as an array ({err})"
    if g.shape != expected.shape:
        return f"shape {g.shape}, expected {expected.shape}"
    bad = ~np.isclose(g, expected, rtol=1e-5, atol=1e-6)
    # x / s and x * (1 / s) can round an exact tie differently: allow one value in a thousand
    if bad.mean() > 1e-3:
        i = int(np.flatnonzero(bad.ravel())[0])
        return (f"{int(bad.sum())} of {bad.size} values differ; first at flat index {i}: got {g.ravel()[i]!r}, "
                f"expected {float(expected.ravel()[i])!r}")
    return None


exercise(Exercise(
    name="quantize_per_token",
    lesson=8,
    prompt=(
        "Write quantize_per_token(x, bits) -> float32 array of x's shape: dynamic asymmetric quantization with one "
        "range per token (each row of the last axis). For each row: lo = min(row.min(), 0), hi = max(row.max(), 0), "
        "scale = (hi - lo) / (2**bits - 1), zero_point = round(-lo / scale), codes = clip(round(x / scale) + "
        "zero_point, 0, 2**bits - 1); return the decoded values (codes - zero_point) * scale."
    ),
    hint=(
        "Reduce over the last axis only and keep it for broadcasting: x.min(axis=-1, keepdims=True). Include 0 in "
        "the range, compute in float32, and clip the codes to [0, 2**bits - 1] before decoding."
    ),
    reference=quantize_per_token,
    cases=_cases,
    compare=_compare,
))

__all__ = ["quantize_per_token"]
