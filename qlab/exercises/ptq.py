"""Exercises of lesson 07 (static PTQ): the scale and zero-point a min-max observer gives."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._core import Case, Exercise, allclose, exercise


def minmax_qparams(x: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """qlab's answer: a ``minmax`` observer on ``x``, then the asymmetric ``int{bits}`` grid's qparams."""
    import torch

    from ..quantize import observers

    obs = observers.get("minmax")
    obs.observe(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    scale, zp = obs.qparams(f"int{bits}", symmetric=False)
    return np.float32(scale), np.int32(zp)


def _cases() -> Iterator[Case]:
    from ..models import load
    from ..models.digits import load_split
    from ..viz.ptq import layer_input

    m = load("digits-cnn", progress=False)
    x, _ = load_split("train")
    fc1 = layer_input(m, x[:64], "fc1")  # real post-ReLU activations: lo = 0
    rng = np.random.default_rng(0)
    yield (fc1, 8), {}
    yield (fc1, 4), {}
    yield (rng.normal(0.5, 2.0, size=(32, 64)).astype(np.float32), 8), {}  # signed: lo < 0, zero-point > 0
    yield (rng.uniform(3.0, 5.0, size=(16, 16)).astype(np.float32), 8), {}  # all positive: 0 must be in range
    yield (rng.uniform(-6.0, -1.0, size=(100,)).astype(np.float32), 4), {}  # all negative


exercise(Exercise(
    name="minmax_qparams",
    lesson=7,
    prompt=(
        "Write minmax_qparams(x, bits) -> (scale, zero_point): the asymmetric grid [0, 2**bits - 1] that a "
        "min-max observer gives for the activation tensor x (numpy float32, any shape). The range is "
        "[min(x), max(x)] widened to contain 0 (so that 0 is exactly representable), scale = (hi - lo) / "
        "(2**bits - 1) in float32, zero_point = round(-lo / scale) as an integer. Return (np.float32, np.int32)."
    ),
    hint=(
        "lo = np.float32(min(x.min(), 0)), hi = np.float32(max(x.max(), 0)); scale = (hi - lo) / np.float32(2**bits - 1); "
        "zero_point = np.int32(np.clip(np.rint(-lo / scale), 0, 2**bits - 1)). Keep float32 throughout."
    ),
    reference=minmax_qparams,
    cases=_cases,
    compare=allclose(rtol=1e-6),
))

__all__ = ["minmax_qparams"]
