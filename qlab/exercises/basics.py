"""Exercises of lessons 01-03: counting parameters, symmetric int8, per-channel scales."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .. import formats
from ._core import Case, Exercise, exercise


# -- lesson 01: count parameters --------------------------------------------------------------------
class _Named(torch.nn.Module):
    """A case model with a short repr (the checker prints the failing case)."""

    def __init__(self, label: str, inner: torch.nn.Module) -> None:
        super().__init__()
        self.label = label
        self.inner = inner

    def __repr__(self) -> str:
        return self.label


class _TiedLM(torch.nn.Module):
    """A miniature language model whose output layer shares the embedding matrix (like SmolLM2)."""

    def __init__(self, vocab: int, d: int) -> None:
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(vocab, d)
        self.norm = torch.nn.LayerNorm(d)
        self.lm_head = torch.nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.embed_tokens.weight


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters of ``model``: a weight shared by two modules counts once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _count_cases() -> Iterator[Case]:
    from ..models import load

    torch.manual_seed(0)
    yield (_Named("digits-cnn", load("digits-cnn", progress=False).model),), {}
    yield (_Named("tiny tied LM (vocab 1000, d 64)", _TiedLM(1000, 64)),), {}
    yield (_Named("MLP 784-256-10", torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                                       torch.nn.Linear(256, 10))),), {}


def _same_int(got: Any, expected: int) -> str | None:
    try:
        g = int(got)
    except (TypeError, ValueError):
        return f"expected an integer, got {type(got).__name__}"
    if g != expected:
        off = "" if g <= expected else " (a shared / tied weight counted twice?)"
        return f"got {g:,}, expected {expected:,}{off}"
    return None


exercise(Exercise(
    "count_parameters", lesson=1,
    prompt="write count_parameters(model) -> int: the number of distinct parameters of a torch module "
           "(weights and biases; a weight shared by two layers, like SmolLM2's tied embedding and "
           "output layer, counts once).",
    hint="model.parameters() yields every parameter tensor once; model.state_dict() lists a tied "
         "weight under each of its names. Sum p.numel().",
    reference=count_parameters, cases=_count_cases, compare=_same_int,
))


# -- lesson 02: symmetric int8 ----------------------------------------------------------------------
def quantize_symmetric_int8(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Codes (int8, shape of ``x``) and the scale of symmetric per-tensor int8: s = max|x| / 127."""
    enc = formats.get("int8").encode(x, symmetric=True, granularity="tensor")
    return enc.parts["codes"], float(enc.parts["scale"][0])


def _int8_cases() -> Iterator[Case]:
    from ..models import minilm_weights

    rng = np.random.default_rng(0)
    yield (rng.normal(0, 0.05, size=(8, 16)).astype(np.float32),), {}
    yield (np.array([-1.27, -0.635, -0.3175, 0.0, 0.004, 0.3175, 0.9], np.float32),), {}
    for name in ("encoder.layer.1.attention.self.value.weight", "encoder.layer.0.output.dense.weight"):
        yield (minilm_weights(name),), {}


def _compare_codes_scale(qmin: int, qmax: int, tolerance: float = 1e-4) -> Any:
    """Compare ``(codes, scale)``: scale to 1e-6 relative, codes exactly except that a fraction
    ``tolerance`` may be off by one (x / s and x * (1 / s) can round differently at a tie)."""

    def compare(got: Any, expected: tuple[np.ndarray, Any]) -> str | None:
        if not isinstance(got, tuple) or len(got) != 2:
            return f"expected a tuple (codes, scale), got {type(got).__name__}"
        q, s = got
        q_ref, s_ref = expected
        s_ref_arr = np.asarray(s_ref, np.float64)
        try:
            s_arr = np.asarray(s, np.float64)
        except (TypeError, ValueError):
            return f"the scale should be a number or an array of numbers, got {type(s).__name__}"
        if s_arr.shape != s_ref_arr.shape and s_arr.size != s_ref_arr.size:
            return f"{s_arr.size} scale(s), expected {s_ref_arr.size}"
        s_arr = s_arr.reshape(s_ref_arr.shape)
        if not np.allclose(s_arr, s_ref_arr, rtol=1e-6, atol=0):
            i = int(np.argmax(~np.isclose(s_arr, s_ref_arr, rtol=1e-6, atol=0)))
            ratio = float(s_arr.ravel()[i] / s_ref_arr.ravel()[i])
            return (f"scale {float(s_arr.ravel()[i]):.6g}, expected {float(s_ref_arr.ravel()[i]):.6g} "
                    f"(ratio {ratio:.4f}; the scale maps max|x| onto code {qmax})")
        q = np.asarray(q)
        if q.shape != q_ref.shape:
            return f"codes have shape {q.shape}, expected {q_ref.shape}"
        if q.dtype.kind not in "iu" and not np.array_equal(q, np.round(q)):
            return "codes must be integers (round them)"
        qi = q.astype(np.int64)
        if qi.min() < qmin or qi.max() > qmax:
            return f"codes range over {qi.min()}..{qi.max()}, outside {qmin}..{qmax}: clip them"
        diff = np.abs(qi - q_ref.astype(np.int64))
        bad = diff > 0
        if diff.max() > 1 or bad.mean() > tolerance:
            i = int(np.flatnonzero(bad.ravel())[0])
            return (f"{int(bad.sum())} of {bad.size} codes differ; first at flat index {i}: got {qi.ravel()[i]}, "
                    f"expected {int(q_ref.ravel()[i])}")
        return None

    return compare


exercise(Exercise(
    "symmetric_int8", lesson=2,
    prompt="write quantize_symmetric_int8(x) -> (q, scale): symmetric per-tensor int8 quantization of a "
           "float32 array. scale = max|x| / 127, q = round(x / scale) clipped to -127..127, as int8.",
    hint="scale = np.abs(x).max() / 127; q = np.clip(np.round(x / scale), -127, 127).astype(np.int8). "
         "Round to nearest (np.round / np.rint), do not truncate with astype alone.",
    reference=quantize_symmetric_int8, cases=_int8_cases, compare=_compare_codes_scale(-127, 127),
))


# -- lesson 03: per-channel scales ------------------------------------------------------------------
def per_channel_scales(w: np.ndarray, bits: int = 8) -> np.ndarray:
    """One symmetric scale per row (output channel) of ``w``: ``max|row| / (2**(bits-1) - 1)``."""
    return formats.get(f"int{bits}").encode(w, symmetric=True, granularity="channel").parts["scale"]


def _channel_cases() -> Iterator[Case]:
    from ..models import minilm_weights

    rng = np.random.default_rng(0)
    yield (rng.normal(0, 0.02, size=(4, 32)).astype(np.float32),), {}
    yield (minilm_weights("encoder.layer.1.attention.self.value.weight"),), {}
    yield (minilm_weights("encoder.layer.0.output.dense.weight"),), {"bits": 4}
    yield (minilm_weights("encoder.layer.0.intermediate.dense.weight"),), {"bits": 8}


def _compare_scales(got: Any, expected: np.ndarray) -> str | None:
    g = np.asarray(got, dtype=np.float64)
    if g.size == expected.size and g.shape != expected.shape:
        g = g.reshape(expected.shape)  # (rows, 1) is fine
    if g.shape != expected.shape:
        return (f"shape {g.shape}, expected {expected.shape}: one scale per row (output channel), i.e. reduce "
                "over the last axis")
    bad = ~np.isclose(g, expected, rtol=1e-6, atol=0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return (f"{int(bad.sum())} of {bad.size} scales differ; first at row {i}: got {g[i]:.6g}, "
                f"expected {float(expected[i]):.6g} (ratio {g[i] / expected[i]:.4f})")
    return None


exercise(Exercise(
    "per_channel_scales", lesson=3,
    prompt="write per_channel_scales(w, bits=8) -> scales: for a weight matrix w (rows = output channels), "
           "the symmetric scale of each row, max|row| / (2**(bits-1) - 1), as a 1-D array.",
    hint="np.abs(w).max(axis=1) reduces each row (axis=0 would give one value per column); divide by "
         "2**(bits-1) - 1 (127 for 8 bits, 7 for 4 bits).",
    reference=per_channel_scales, cases=_channel_cases, compare=_compare_scales,
))
