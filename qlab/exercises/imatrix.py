"""Exercise of lesson 16: the importance vector ``llama-imatrix`` collects from a layer's inputs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ._core import Case, Exercise, allclose, exercise


def importance_vector(batches: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over every token row of every batch of ``x**2`` per input column (``in_sum2 / counts``
    of ``tools/imatrix/imatrix.cpp``: one count per row), float32."""
    cols = batches[0].shape[-1]
    s = sum(np.square(np.asarray(b, dtype=np.float64).reshape(-1, cols)).sum(0) for b in batches)
    n = sum(int(np.prod(b.shape[:-1])) for b in batches)
    return (s / n).astype(np.float32)


def _batches() -> Iterator[Case]:
    rng = np.random.default_rng(16)
    yield ([rng.normal(size=(5, 8)).astype(np.float32)],), {}
    # batches of different lengths: a mean of per-batch means is not the mean over tokens
    yield ([rng.normal(size=(3, 16)).astype(np.float32), rng.normal(scale=3, size=(29, 16)).astype(np.float32)],), {}
    # (batch, seq, cols) activations with one "massive" column, as SmolLM2's residual stream has
    x = rng.normal(size=(2, 12, 32)).astype(np.float32)
    x[..., 5] *= 200
    yield ([x, x[:1, :7] * -1],), {}


exercise(Exercise(
    name="importance_vector",
    lesson=16,
    prompt=("write importance(batches) -> the importance vector llama-imatrix collects for one weight matrix: "
            "batches is a list of input arrays of shape (..., cols) (tokens, or batch x seq x cols); return, "
            "per column j, the mean of x_j**2 over ALL token rows of all batches (float32, shape (cols,))."),
    hint=("square first, then average (not mean |x|, not the square of the mean); flatten every batch to "
          "(-1, cols) and divide the summed squares by the total number of rows, so a long batch counts more "
          "than a short one."),
    reference=importance_vector,
    cases=_batches,
    compare=allclose(rtol=1e-5),
))  # fmt: skip
