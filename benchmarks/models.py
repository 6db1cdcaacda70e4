"""Real models: load times, and a full size-vs-accuracy compare on SmolLM2 with its time and memory.

    python benchmarks/models.py [--formats q8_0,q6_k,...] [--windows 16] [--window 512] [--skip-compare]

1. Load time of every zoo model: the first ``qlab.models.load`` in a process (parse, dequantize,
   build) and a second one (a deep copy from the per-process cache).
2. ``qlab.sweep`` of SmolLM2-135M over ten formats with WikiText-2 windows (16 x 512 tokens by
   default), **without** the result cache (``cache=False``): the float reference forward once,
   then per format the quantization of every weight from a snapshot and one evaluation forward.
   Printed: the compare table (bits/weight, MB, perplexity, KL, top-1, seconds per format), the
   total wall time against the 15-minute budget, the CPU time (to tell a slow run from a machine
   busy with other work) and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

FORMATS = "q8_0,q6_k,q5_0,q4_k_m,q4_k,q4_0,nf4,fp8_e4m3,mxfp4,int4"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * (1 if sys.platform == "darwin" else 1024) / 1e6


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_times() -> None:
    import qlab.models

    print(f"{'model':14s} {'first load s':>12s} {'copy s':>8s} {'params':>12s}")
    for name in qlab.models.ZOO:
        qlab.models.clear_cache()
        t0 = time.perf_counter()
        m = qlab.models.load(name, progress=False)
        t1 = time.perf_counter()
        qlab.models.load(name, progress=False)
        t2 = time.perf_counter()
        print(f"{name:14s} {t1 - t0:12.1f} {t2 - t1:8.2f} {m.num_parameters:12,d}")
    print(f"peak RSS after loading: {peak_rss_mb():.0f} MB\n")


def compare(formats: list[str], window: int, windows: int) -> None:
    import qlab.models
    from qlab.analysis.sweep import sweep

    m = qlab.models.load("smollm2-135m", progress=False)
    c0, t0 = cpu_seconds(), time.perf_counter()
    res = sweep(m, formats, window=window, windows=windows, cache=False, progress=True)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    print(f"smollm2-135m, {windows} x {window} tokens of WikiText-2, {len(formats)} formats, "
          f"{torch.get_num_threads()} torch threads")  # fmt: skip
    print(res.table())
    print(f"\ntotal {wall:.0f} s ({wall / 60:.1f} min; budget 15 min) -- reference forward "
          f"{res.rows[0]['seconds']:.0f} s, formats {sum(r['seconds'] for r in res.rows[1:]):.0f} s")  # fmt: skip
    print(f"CPU time {cpu:.0f} s = {cpu / wall:.2f} cores busy on average (a machine shared with other "
          f"work shows wall time > CPU time / threads)")  # fmt: skip
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default=FORMATS)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--skip-loads", action="store_true")
    ap.add_argument("--skip-compare", action="store_true")
    a = ap.parse_args()
    if not a.skip_loads:
        load_times()
    if not a.skip_compare:
        compare([f for f in a.formats.split(",") if f], a.window, a.windows)


if __name__ == "__main__":
    main()
