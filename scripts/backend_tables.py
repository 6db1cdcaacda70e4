"""Lesson 12 cache: the backend comparison tables of MiniLM-L6 and digits-cnn.

    python scripts/backend_tables.py          # writes data/cache/backend_tables.json

``qlab.backends.compare.backend_table(model)`` for each model: every standard variant on PyTorch
(torch.ao), ONNX Runtime and bitsandbytes, with bytes, accuracy (MiniLM: cosine / top-10 overlap
with fp32 on 256 WikiText-2 sentences; digits: test accuracy) and latency at batch 32 timed
round-robin against the float model in the same run (one thread, 10 rounds). Accuracy and bytes
are deterministic; latency figures belong to the machine recorded in the cache.
"""

from __future__ import annotations

import time

import torch

from qlab import cache
from qlab.backends.compare import backend_table
from qlab.viz.deploy import CACHE

MODELS = ("minilm-l6", "digits-cnn")
REPEAT = 10
THREADS = 1


def main() -> None:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    out = {}
    for name in MODELS:
        t = backend_table(name, batch_size=32, repeat=REPEAT, threads=THREADS)
        out[name] = {"metrics": t.metrics, "batch_size": t.batch_size,
                     "rows": [{k: (float(v) if isinstance(v, float) else v) for k, v in r.items()} for r in t.rows]}
        print(t, f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
    path = cache.save(CACHE, out, script="scripts/backend_tables.py",
                      params={"models": list(MODELS), "batch_size": 32, "repeat": REPEAT, "threads": THREADS})
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
