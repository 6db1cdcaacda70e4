"""Lesson 15's claim "OpenVINO gives 3-8x speed-ups on Intel hardware", measured on this CPU.

:func:`speedup` times MiniLM-L6 on PyTorch fp32, OpenVINO fp32 (f32 execution) and OpenVINO
static int8 (``nncf.quantize``) round-robin in one run (:func:`qlab.core.latency.measure_timings`:
one call of each per round, so load and clock changes hit all three alike) at batch 1 and 32,
and returns the ratios round by round: median and interquartile range. The claim compares an
OpenVINO INT8 model with the framework's fp32 model; the ratio to OpenVINO fp32 separates what
int8 gives from what the runtime alone gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...core.calibration import example_batches, run_batch
from ...core.latency import measure_timings
from .quantize import float_model, quantize_static


def speedup(m: Any = None, batch_sizes: Sequence[int] = (1, 32), repeat: int = 20, threads: int | None = None,
            ) -> dict[int, dict[str, Any]]:  # fmt: skip
    """``{batch: {"vs_torch_fp32": (q1, median, q3), "vs_openvino_fp32": (...), "ms": {...}}}``:
    how many times faster OpenVINO int8 runs MiniLM than PyTorch fp32 and than OpenVINO fp32."""
    if not isinstance(repeat, int) or repeat < 3:
        raise ValueError(f"repeat must be an int >= 3 (quartiles need rounds), got {repeat!r}")
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes!r}")
    if m is None:
        from ...models import load

        m = load("minilm-l6", progress=False)
    f32 = float_model(m)
    q8 = quantize_static(m, example_batches(m, 128, 32, "calibration"))
    for b in (f32, q8):
        b.model.recompile(threads)
    out: dict[int, dict[str, Any]] = {}
    for bs in batch_sizes:
        batch = example_batches(m, bs, bs, "eval")[0]
        fns = {"torch_fp32": lambda b=batch: run_batch(m.model, b),
               "openvino_fp32": lambda b=batch: run_batch(f32.model, b),
               "openvino_int8": lambda b=batch: run_batch(q8.model, b)}
        t = measure_timings(fns, repeat, threads=threads)
        out[bs] = {"vs_torch_fp32": t.ratio("openvino_int8", "torch_fp32"),
                   "vs_openvino_fp32": t.ratio("openvino_int8", "openvino_fp32"),
                   "ms": {k: 1e3 * t.median(k) for k in fns}, "timings": t}
    return out


__all__ = ["speedup"]
