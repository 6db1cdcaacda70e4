"""Latency: median seconds per call of several functions, timed round-robin in the same run.

Timing one call of each function per round (median over rounds) makes CPU frequency changes and
other load hit every function alike, so the *ratio* of two latencies is meaningful even on a busy
machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def measure_latency(
    fns: dict[str, Callable[[], Any]], repeat: int = 20, warmup: int = 2, threads: int | None = None
) -> dict[str, float]:
    """Median seconds per call of each function, timed round-robin (one call of each per round).

    ``threads``: torch's intra-op thread count while timing (ONNX Runtime sessions take theirs
    when created; :func:`compare` re-creates them with the same count).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    old = torch.get_num_threads()
    torch.set_num_threads(threads or old)
    try:
        with torch.inference_mode():
            for r in range(warmup + repeat):
                for k, f in fns.items():
                    t = time.perf_counter()
                    f()
                    if r >= warmup:
                        times[k].append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    return {k: statistics.median(v) for k, v in times.items()}


__all__ = ["measure_latency"]
