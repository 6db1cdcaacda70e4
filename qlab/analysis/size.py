"""Model size, bits per weight and memory traffic (lesson 01, "why quantize").

Size of a model = parameters x bits per weight / 8. The bits per weight of a quantized format are
more than its element width: every block (group, row, tensor) also stores its scale, and
:func:`effective_bits` counts that from the format's own :class:`~qlab.formats.Layout`. Decoding
one token of an LLM reads every weight once, so the time to *stream the weights* at a given memory
bandwidth (:func:`stream_seconds`) bounds the tokens per second of a memory-bound decoder.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .. import formats
from ..core.model import Loaded
from ..quantize.recipes import targets, torch_module


def parameter_counts(m: Loaded) -> dict[str, Any]:
    """Distinct parameters of a model (a tied embedding/output matrix counts once).

    Keys: ``total``; ``weights`` (the Linear / Embedding / Conv matrices a quantizer converts);
    ``other`` (biases, norms: usually kept in float); ``tied`` (names of modules sharing a
    weight with another, e.g. ``lm_head``); ``float32_bytes`` (``total * 4``).
    """
    mod = torch_module(m)
    seen: dict[int, int] = {}
    for p in mod.parameters():  # parameters() already yields a shared tensor once
        seen[id(p)] = p.numel()
    total = sum(seen.values())
    tg = targets(mod)
    weights = sum(t.numel for t in tg)
    return {
        "total": total,
        "weights": weights,
        "other": total - weights,
        "tied": [a for t in tg for a in t.aliases],
        "float32_bytes": total * 4,
    }


def _number(name: str, v: Any, fn: str, positive: bool = False) -> float:
    """``v`` as a float, checked: a real number (not bool/str/None), finite, ``>= 0`` (``> 0``
    with ``positive``); otherwise ValueError/TypeError naming ``fn``, the argument and the value."""
    if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
        raise TypeError(f"{fn}: {name} must be a number, got {type(v).__name__} {v!r}")
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{fn}: {name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
    return float(v)


def group_bits(element_bits: float, scale_bits: float, group_size: int, zero_bits: float = 0.0) -> float:
    """Bits per weight of ``element_bits`` codes plus one scale (and zero-point) per ``group_size``
    values: ``element_bits + (scale_bits + zero_bits) / group_size`` (Q4_0 = 4 + 16/32 = 4.5)."""
    for name, v in (("element_bits", element_bits), ("scale_bits", scale_bits), ("zero_bits", zero_bits)):
        _number(name, v, "group_bits")
    _number("group_size", group_size, "group_bits", positive=True)
    bits = element_bits + (scale_bits + zero_bits) / group_size
    if not math.isfinite(bits):  # finite inputs near the float64 limit can still overflow
        raise ValueError(
            f"group_bits: {element_bits!r} + ({scale_bits!r} + {zero_bits!r}) / {group_size!r} overflows float64; "
            "bit widths are small numbers"
        )
    return bits


def effective_bits(fmt: str, row_length: int | None = None, n_rows: int | None = None, **options: Any) -> float:
    """Bits per weight of ``fmt`` including every stored scale, from its :class:`Layout`.

    Block parts are counted per block; ``per_row`` parts (per-channel scales) are spread over
    ``row_length`` values and ``per_tensor`` parts over ``n_rows * row_length`` values (ignored
    when those are not given, i.e. for a tensor so large they vanish).
    """
    for name, v in (("row_length", row_length), ("n_rows", n_rows)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name} must be a positive int or None, got {v!r}")
    lay = formats.get(fmt).layout(**options)
    bits = lay.bits_per_weight
    if row_length:
        bits += 8.0 * sum(n for _, n in lay.per_row) / row_length
        if n_rows:
            bits += 8.0 * sum(n for _, n in lay.per_tensor) / (row_length * n_rows)
    return float(bits)


def size_table(n_params: int, schemes: dict[str, float], other_params: int = 0) -> list[dict[str, Any]]:
    """One row per scheme ``{label: bits per weight}`` applied to ``n_params`` weights, plus
    ``other_params`` kept in float32 (biases, norms): bytes, GB (1e9 bytes), ratio to all-fp32."""
    _number("n_params", n_params, "size_table")
    _number("other_params", other_params, "size_table")
    for label, bits in schemes.items():
        _number(f"schemes[{label!r}] (bits per weight)", bits, "size_table", positive=True)
    if n_params + other_params == 0:
        raise ValueError("size_table: n_params + other_params is 0; there is no model to size")
    rows = []
    fp32 = (n_params + other_params) * 4.0
    for label, bits in schemes.items():
        nbytes = n_params * bits / 8.0 + other_params * 4.0
        if not math.isfinite(nbytes) or not math.isfinite(fp32):
            raise ValueError(f"size_table: {n_params!r} weights at {bits!r} bits overflow float64 bytes")
        rows.append({"scheme": label, "bits_per_weight": float(bits), "bytes": nbytes,
                     "gb": nbytes / 1e9, "vs_fp32": fp32 / nbytes})
    return rows


def stream_seconds(nbytes: float, gb_per_s: float) -> float:
    """Seconds to read ``nbytes`` once at ``gb_per_s`` (1e9 bytes per second)."""
    _number("nbytes", nbytes, "stream_seconds", positive=True)
    _number("gb_per_s (bandwidth)", gb_per_s, "stream_seconds", positive=True)
    s = float(nbytes) / (float(gb_per_s) * 1e9)
    if not math.isfinite(s) or s <= 0:  # over/underflow at the float64 limits: not a real size or bandwidth
        raise ValueError(f"stream_seconds: {nbytes!r} bytes at {gb_per_s!r} GB/s gives {s!r} s, not a usable time")
    return s


def decode_table(model_bytes: dict[str, float], bandwidths: dict[str, float]) -> list[dict[str, Any]]:
    """For each (scheme, memory): time to stream the weights once and the resulting upper bound on
    tokens per second of a memory-bound decoder (one full read of the weights per token)."""
    rows = []
    for scheme, nbytes in model_bytes.items():
        for mem, bw in bandwidths.items():
            s = stream_seconds(nbytes, bw)
            rows.append({"scheme": scheme, "memory": mem, "gb_per_s": bw, "seconds": s, "tokens_per_s": 1.0 / s})
    return rows


def measure_bandwidth(mbytes: int = 64, repeat: int = 5) -> float:
    """Measured copy bandwidth of this machine in GB/s (best of ``repeat`` copies of ``mbytes`` MB;
    a copy reads and writes, so 2 x bytes are moved). A timing: varies from run to run."""
    a = np.ones(mbytes * 250_000, np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best / 1e9


def matmul_latency(tokens: int = 16, d_in: int = 2048, d_out: int = 2048, repeat: int = 20,
                   threads: int | None = None, seed: int = 0) -> Any:
    """:class:`~qlab.core.latency.Timings` (``"fp32"``, ``"int8"``, round-robin) of one
    ``Linear(d_in, d_out)`` on ``tokens`` rows: float32 (``torch.nn.Linear``)
    vs int8 (PyTorch's dynamic-quantized ``Linear``: int8 weights, activations quantized per
    call, fbgemm/onednn int8 GEMM). A timing: depends on the CPU and its load."""
    from ..core.latency import measure_timings

    torch.manual_seed(seed)
    lin = torch.nn.Linear(d_in, d_out).eval()
    with warnings.catch_warnings():  # torch.ao's quantized tensors carry a deprecation notice
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
    x = torch.randn(tokens, d_in)
    return measure_timings({"fp32": lambda: lin(x), "int8": lambda: q(x)}, repeat=repeat, threads=threads)


def model_rows(models: Iterable[Any], schemes: dict[str, float]) -> list[dict[str, Any]]:
    """:func:`size_table` for each loaded model: its weight matrices take each scheme, the other
    parameters (biases, norms) stay float32; ``model`` and ``params`` (distinct, total) added."""
    out = []
    for m in models:
        c = parameter_counts(m)
        for r in size_table(c["weights"], schemes, other_params=c["other"]):
            out.append({"model": m.name, "params": c["total"], **r})
    return out


__all__ = [
    "parameter_counts", "group_bits", "effective_bits", "size_table", "stream_seconds", "decode_table",
    "measure_bandwidth", "matmul_latency", "model_rows",
]  # fmt: skip
