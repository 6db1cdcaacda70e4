"""Exercises of lesson 09 (QAT): the gradient LSQ uses for its step size."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._core import Case, Exercise, allclose, exercise


def lsq_step_grad(v: np.ndarray, s: float, bits: int) -> np.ndarray:
    """qlab's answer: d v_hat / d s for each element, by autograd through qlab's LSQ rounding
    (``round`` passed straight through), before LSQ's gradient scale."""
    import torch

    from ..quantize.qat import _round_ste

    q = 2 ** (bits - 1) - 1
    vt = torch.from_numpy(np.asarray(v, np.float64))
    st = torch.full_like(vt, float(s), requires_grad=True)  # one copy of s per element: per-element gradients
    v_hat = _round_ste(torch.clamp(vt / st, -q, q)) * st
    v_hat.sum().backward()
    return st.grad.numpy()


def _cases() -> Iterator[Case]:
    from ..models import load
    from ..viz.qat import lsq_init_step

    w = load("digits-cnn", progress=False).model.fc1.weight.detach().double().numpy()[:4]  # real weights (4, 512)
    for bits in (4, 2):
        yield (w, lsq_init_step(w, bits), bits), {}
    rng = np.random.default_rng(0)
    yield (rng.normal(size=200) * 3, 0.5, 3), {}  # many values clipped on both sides


exercise(Exercise(
    name="lsq_step_grad",
    lesson=9,
    prompt=(
        "Write lsq_step_grad(v, s, bits) -> array like v: the derivative of LSQ's quantized value "
        "v_hat = round(clamp(v / s, -Q, Q)) * s with respect to the step s, for each element (Q = 2**(bits-1) - 1, "
        "round's derivative taken as 1 -- the straight-through estimator). Leave out LSQ's gradient scale."
    ),
    hint=(
        "Three cases: v/s < -Q gives -Q; v/s > Q gives Q; otherwise (including v/s = +-Q) round(v/s) - v/s (differentiate round(v/s)*s "
        "with d round(u)/du = 1). Use np.round (half to even), as torch.round does."
    ),
    reference=lsq_step_grad,
    cases=_cases,
    compare=allclose(atol=1e-9),
))

__all__ = ["lsq_step_grad"]
