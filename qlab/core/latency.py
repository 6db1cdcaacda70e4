"""Latency: seconds per call of several functions, timed round-robin in the same run.

Timing one call of each function per round makes CPU frequency changes and other load hit every
function alike, so the *ratio* of two latencies is meaningful even on a busy machine.
:func:`measure_timings` keeps every round: the median, the interquartile range (the spread a
lesson prints next to the median) and, for two functions, the ratio measured round by round
(:meth:`Timings.ratio`). :func:`measure_latency` is the medians alone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


def _quartiles(v: list[float]) -> tuple[float, float, float]:
    if len(v) < 2:
        return v[0], v[0], v[0]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


@dataclass(frozen=True)
class Timings:
    """Seconds of every timed round per function (``rounds[name][r]``), all in one run."""

    rounds: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self._get(name))

    def spread(self, name: str) -> tuple[float, float]:
        """Interquartile range (25th, 75th percentile) of ``name``'s seconds per call."""
        q1, _, q3 = _quartiles(self._get(name))
        return q1, q3

    def ratio(self, num: str, den: str) -> tuple[float, float, float]:
        """``den / num`` round by round ("how many times faster ``num`` is than ``den``"):
        (25th percentile, median, 75th percentile) over the rounds."""
        a, b = self._get(num), self._get(den)
        return _quartiles([d / n for n, d in zip(a, b, strict=True)])

    def text(self, name: str, unit: float = 1e-3, suffix: str = "ms") -> str:
        """``"12.3 ms (IQR 11.9-13.0)"``."""
        q1, q3 = self.spread(name)
        return f"{self.median(name) / unit:.3g} {suffix} (IQR {q1 / unit:.3g}-{q3 / unit:.3g})"

    def _get(self, name: str) -> list[float]:
        if name not in self.rounds:
            raise KeyError(f"no timing {name!r}; timed: {', '.join(self.rounds)}")
        return self.rounds[name]


def measure_timings(
    fns: dict[str, Callable[[], Any]], repeat: int = 20, warmup: int = 2, threads: int | None = None
) -> Timings:
    """Time each function ``repeat`` times after ``warmup`` untimed rounds, round-robin (one call of
    each per round). ``threads``: torch's intra-op thread count while timing (ONNX Runtime
    sessions take theirs when created)."""
    if not fns:
        raise ValueError("fns is empty: give at least one function to time")
    if not isinstance(repeat, int) or repeat < 1 or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"repeat must be an int >= 1 and warmup an int >= 0, got repeat={repeat!r}, warmup={warmup!r}")
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
    return Timings(times)


def measure_latency(
    fns: dict[str, Callable[[], Any]], repeat: int = 20, warmup: int = 2, threads: int | None = None
) -> dict[str, float]:
    """Median seconds per call of each function (:func:`measure_timings`)."""
    t = measure_timings(fns, repeat, warmup, threads)
    return {k: t.median(k) for k in fns}


__all__ = ["Timings", "measure_timings", "measure_latency"]
