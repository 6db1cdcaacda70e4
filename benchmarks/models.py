"""Real models: load times, perplexity throughput against llama.cpp, and a full size-vs-accuracy
compare on SmolLM2 with its time and memory (issue 13 item 4).

    python benchmarks/models.py [--formats q8_0,q6_k,...] [--windows 16] [--window 512]
                                [--skip-loads] [--skip-throughput] [--skip-compare] [--rounds 3]
                                [--throughput-windows 4] [--threads N]

1. Load time of every zoo model: the first ``qlab.models.load`` in a process (parse, dequantize,
   build) and a second one (a deep copy from the per-process cache).
2. ``qlab.sweep`` of SmolLM2-135M over ten formats with WikiText-2 windows (16 x 512 tokens by
   default), **without** the result cache (``cache=False``): the float reference forward once,
   then per format the quantization of every weight from a snapshot and one evaluation forward.
   Printed: the compare table (bits/weight, MB, perplexity, KL, top-1, seconds per format), the
   total wall time against the 5-minute goal, the CPU time (to tell a slow run from a machine
   busy with other work) and the peak resident memory of the process.
3. Perplexity throughput (scored-window tokens per second) of the float SmolLM2-135M: qlab
   (PyTorch, the evaluator's forward + NLL, one window per forward and the sweep's 4) against
   llama.cpp (``qlab.backends.llamacpp.perplexity`` on the F32 GGUF that
   ``qlab.backends.llamacpp.export_gguf(m, path, "f32")`` writes), same WikiText-2 windows, same
   thread count, in rounds that alternate the two so both see the same machine load; the ratio
   is the median over rounds (goal: qlab >= 0.5x llama.cpp). llama.cpp runs in a child process:
   its fixed cost (process start, model load, tokenizing) is measured with a 1-window run and
   reported separately, its throughput is the marginal one ``(windows - 1) * window / (t_n - t_1)``.

Runs set ``OMP_WAIT_POLICY=PASSIVE`` as the ``qlab`` command does (:func:`qlab.cli.passive_openmp`):
both runtimes inherit it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see qlab.cli.passive_openmp

import torch  # noqa: E402

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
    print(f"\ntotal {wall:.0f} s ({wall / 60:.1f} min; goal 5 min on 2 cores, issue 13) -- reference forward "
          f"{res.rows[0]['seconds']:.0f} s, formats {sum(r['seconds'] for r in res.rows[1:]):.0f} s")  # fmt: skip
    print(f"CPU time {cpu:.0f} s = {cpu / wall:.2f} cores busy on average (a machine shared with other "
          f"work shows wall time > CPU time / threads)")  # fmt: skip
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


def qlab_nll_seconds(m, ids: torch.Tensor, batch: int) -> tuple[float, float]:
    """(seconds, perplexity) of qlab's float forward + NLL over the windows ``ids`` (full-window)."""
    from qlab.core import lm

    t0 = time.perf_counter()
    nll = [lm.window_logprobs(lg, ids[w])[1] for w, lg in enumerate(lm.window_logits(m, ids, batch=batch))]
    return time.perf_counter() - t0, lm.nll_to_perplexity(torch.cat(nll))


def llama_seconds(path: Path, text: str, window: int, windows: int, threads: int) -> tuple[float, float]:
    """(seconds, perplexity) of ``qlab.backends.llamacpp.perplexity`` (child start included)."""
    from qlab.backends.llamacpp import perplexity

    t0 = time.perf_counter()
    ppl = perplexity(path, text, window, windows, threads=threads)
    return time.perf_counter() - t0, ppl


def throughput(window: int, windows: int, rounds: int) -> None:
    import qlab.models
    from qlab.backends.llamacpp import export_gguf
    from qlab.core import lm
    from qlab.core.text import wikitext2_test

    if windows < 2:
        raise ValueError(f"--windows {windows}: the throughput needs at least 2 windows (one is the startup run)")
    m = qlab.models.load("smollm2-135m", progress=False)
    text, threads = wikitext2_test(), torch.get_num_threads()
    ids = lm.token_windows(m, text, window, windows)
    tokens = windows * window
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "smollm2-135m-f32.gguf"
        export_gguf(m, path, "f32")
        qlab_nll_seconds(m, ids[:1], 1)  # warm-up (first-call allocations)
        rows: dict[str, list[float]] = {"qlab b1": [], "qlab b4": [], "llama": [], "llama 1": []}
        ppl: dict[str, float] = {}
        for _ in range(rounds):
            for key, run in (("qlab b1", lambda: qlab_nll_seconds(m, ids, 1)),
                             ("llama", lambda: llama_seconds(path, text, window, windows, threads)),
                             ("qlab b4", lambda: qlab_nll_seconds(m, ids, 4)),
                             ("llama 1", lambda: llama_seconds(path, text, window, 1, threads))):  # fmt: skip
                sec, ppl[key] = run()
                rows[key].append(sec)
    marginal = [(windows - 1) * window / (t - t1) for t, t1 in zip(rows["llama"], rows["llama 1"], strict=True)]
    startup = [t1 - window / r for t1, r in zip(rows["llama 1"], marginal, strict=True)]
    print(f"perplexity throughput, float SmolLM2-135M, {windows} x {window} tokens of WikiText-2 (full-window), "
          f"{threads} threads, median of {rounds} rounds, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"  llama.cpp F32 GGUF : {statistics.median(marginal):7.0f} tokens/s (marginal), fixed cost per "
          f"run {statistics.median(startup):.1f} s (child, load, tokenize), ppl {ppl['llama']:.4f}")  # fmt: skip
    for key, b in (("qlab b1", 1), ("qlab b4", 4)):
        rate = [tokens / t for t in rows[key]]
        ratio = statistics.median(r / mr for r, mr in zip(rate, marginal, strict=True))
        print(f"  qlab, batch {b}      : {statistics.median(rate):7.0f} tokens/s = {ratio:.2f}x llama.cpp "
              f"(goal >= 0.5x), ppl {ppl[key]:.4f}")  # fmt: skip
    rel = abs(ppl["qlab b1"] / ppl["llama"] - 1)
    print(f"  same tokens: perplexities differ by {100 * rel:.3f} % (qlab's own tokenizer vs llama.cpp's)\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formats", default=FORMATS)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--skip-loads", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="throughput: alternating rounds (default 3)")
    ap.add_argument("--throughput-windows", type=int, default=4, help="throughput: windows per run (default 4)")
    ap.add_argument("--threads", type=int, default=None, help="torch and llama.cpp threads (default: torch's)")
    a = ap.parse_args()
    if a.threads is not None:
        if a.threads < 1:
            raise SystemExit(f"--threads {a.threads}: give at least 1")
        torch.set_num_threads(a.threads)
    if not a.skip_loads:
        load_times()
    if not a.skip_throughput:
        throughput(a.window, a.throughput_windows, a.rounds)
    if not a.skip_compare:
        compare([f for f in a.formats.split(",") if f], a.window, a.windows)


if __name__ == "__main__":
    main()
