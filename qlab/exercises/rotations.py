"""Exercises of lesson 17: build a Hadamard matrix, and count a KV cache's bytes per token."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..quantize.rotation import hadamard as _hadamard
from ._core import Case, Exercise, exercise


def hadamard_matrix(n: int) -> np.ndarray:
    """Sylvester's Hadamard matrix of order ``n`` (a power of two): ``H_1 = [[1]]``,
    ``H_2k = [[H_k, H_k], [H_k, -H_k]]``; float64 entries +-1."""
    return _hadamard(int(n)).numpy()


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: int, block: int, block_bytes: int) -> float:
    """Bytes per token of a KV cache: K and V, each ``kv_heads * head_dim`` values per layer, stored
    in blocks of ``block`` values taking ``block_bytes`` bytes (f16: 1 and 2; q8_0: 32 and 34; q4_0: 32 and 18)."""
    return float(layers * 2 * kv_heads * head_dim / block * block_bytes)


def _hadamard_cases() -> Iterator[Case]:
    for n in (1, 2, 4, 8, 16):
        yield (n,), {}


def _kv_cases() -> Iterator[Case]:
    yield (30, 3, 64, 1, 2), {}  # SmolLM2-135M, f16 cache
    yield (30, 3, 64, 32, 34), {}  # q8_0
    yield (30, 3, 64, 32, 18), {}  # q4_0
    yield (32, 8, 128, 1, 2), {}  # Llama-3-8B, f16
    yield (16, 8, 64, 32, 18), {}  # Llama-3.2-1B, q4_0


exercise(Exercise(
    name="hadamard_matrix",
    lesson=17,
    prompt=("write hadamard_matrix(n) -> Sylvester's n x n Hadamard matrix for n a power of two: H_1 = [[1]], "
            "H_2k = [[H_k, H_k], [H_k, -H_k]] (np.block). Then H @ H.T == n * I: H / sqrt(n) is orthogonal."),
    hint="start from np.ones((1, 1)) and double it with np.block([[h, h], [h, -h]]) until it has n rows",
    reference=hadamard_matrix,
    cases=_hadamard_cases,
))  # fmt: skip

exercise(Exercise(
    name="kv_bytes_per_token",
    lesson=17,
    prompt=("write kv_bytes_per_token(layers, kv_heads, head_dim, block, block_bytes) -> bytes of KV cache per "
            "token: every layer stores K and V, kv_heads * head_dim values each, in blocks of `block` values "
            "of `block_bytes` bytes."),
    hint="layers * 2 (K and V) * kv_heads * head_dim values, divided by block, times block_bytes",
    reference=kv_bytes_per_token,
    cases=_kv_cases,
))  # fmt: skip

__all__ = ["hadamard_matrix", "kv_bytes_per_token"]
