"""What running llama.cpp in a child process costs (qlab.backends.llamacpp.isolate).

Peer, measured in the same run: the same work in this process with llama-cpp-python directly
(load the GGUF, evaluate the windows from an empty KV cache, read the logits). Printed as ratios:

    python benchmarks/llamacpp_isolation.py [--windows 4] [--window 512] [--repeat 3]

* a bare round trip (start a child, import llama_cpp, answer) against an in-process call;
* ``qlab.backends.llamacpp.perplexity`` (tokenize + logits of every window, in children) against
  the in-process loop on the same tokens.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    import llama_cpp

    from qlab.backends.llamacpp import perplexity, tokenize
    from qlab.backends.llamacpp.isolate import call
    from qlab.core.latency import measure_latency
    from qlab.eval import wikitext2_test
    from qlab.models.smollm2 import smollm2_gguf

    path, text = str(smollm2_gguf()), wikitext2_test()
    ids = np.asarray(tokenize(path, text[: 8 * a.window * a.windows])[: a.window * a.windows]).reshape(a.windows, -1)

    def in_process() -> float:
        n = os.cpu_count() or 1
        llm = llama_cpp.Llama(model_path=path, n_ctx=a.window, n_batch=a.window, n_ubatch=a.window,
                              logits_all=True, n_threads=n, n_threads_batch=n, verbose=False)  # fmt: skip
        total = 0.0
        for row in ids:
            llm.reset()
            llm.eval([int(t) for t in row])
            logits = np.array(llm.scores[: len(row)], dtype=np.float64)
            lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
            total += float((lse[:-1] - logits[np.arange(len(row) - 1), row[1:]]).sum())
        llm.close()
        return float(np.exp(total / (ids.size - len(ids))))

    ppl_child = perplexity(path, text, window=a.window, windows=a.windows)
    ppl_here = in_process()
    # medians, timed round-robin (a change of load hits both sides alike)
    rt = measure_latency({"child": lambda: call("system_info"), "here": llama_cpp.llama_print_system_info},
                         repeat=3 * a.repeat, warmup=1)
    t_rt, t_rt_here = rt["child"], rt["here"]
    run = measure_latency({"child": lambda: perplexity(path, text, window=a.window, windows=a.windows),
                           "here": in_process}, repeat=a.repeat, warmup=0)
    t_child, t_here = run["child"], run["here"]
    print(f"SmolLM2-135M Q4_1, {a.windows} x {a.window} tokens, {os.cpu_count()} threads, median of {a.repeat}, round-robin")
    print(f"perplexity: child {ppl_child:.4f}, in process {ppl_here:.4f} (same tokens, same logits)")
    print(f"round trip (child start + llama_cpp import): {t_rt * 1e3:.0f} ms "
          f"(in process: {t_rt_here * 1e6:.0f} us)")  # fmt: skip
    print(f"perplexity run: child {t_child:.2f} s, in process {t_here:.2f} s, "
          f"ratio {t_child / t_here:.3f}x (overhead {100 * (t_child / t_here - 1):.1f} %)")  # fmt: skip
    print(f"median load of the machine during the run: {statistics.median(os.getloadavg()):.2f}")


if __name__ == "__main__":
    main()
