"""Lesson 12 cache: the backend comparison tables of MiniLM-L6, digits-cnn and SmolLM2-135M.

    nice python scripts/backend_tables.py     # writes data/cache/backend_tables.json

``qlab.backends.compare.backend_table(model)`` for MiniLM and digits: every standard variant on
PyTorch (torch.ao), ONNX Runtime, bitsandbytes and OpenVINO, with bytes, accuracy (MiniLM: cosine /
top-10 overlap with fp32 on 256 WikiText-2 sentences; digits: test accuracy) and latency at batch
32 timed round-robin against the float model in the same run (one thread, 10 rounds).

SmolLM2: the OpenVINO rows only (llama.cpp's rows are lesson 13's capstone cache), measured on
the *same tokens* as those: perplexity, and KL / top-1 against qlab's float model, over 16
windows of 512 tokens of WikiText-2 test (full-window protocol); latency of one 128-token window.
Accuracy and bytes are deterministic; latency figures belong to the machine recorded in the cache.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from qlab import cache
from qlab.backends.compare import backend_table, compare, openvino_models
from qlab.viz.deploy import CACHE

MODELS = ("minilm-l6", "digits-cnn")
LM = "smollm2-135m"
LM_WINDOWS = 16
REPEAT = 10
THREADS = 1


def _rows(t: Any) -> dict[str, Any]:
    return {"metrics": t.metrics, "batch_size": t.batch_size,
            "rows": [{k: (float(v) if isinstance(v, float) else v) for k, v in r.items()} for r in t.rows]}


def lm_table(repeat: int = REPEAT, threads: int = THREADS, windows: int = LM_WINDOWS) -> Any:
    """SmolLM2's OpenVINO rows with perplexity, KL and top-1 on the capstone's tokens."""
    from qlab import eval as qeval
    from qlab.backends.compare import batches
    from qlab.models import load

    m = load(LM, progress=False)
    ref = qeval.reference(m, windows=windows, dtype=torch.float16, progress=False)

    def metrics(b: Any) -> dict[str, float]:
        r = qeval.compare(b, ref, progress=False)
        return {"perplexity": r["perplexity"], "kl": r["kl"], "top1": r["top1"]}

    batch = batches(m, 1, 1, "eval")[0]  # one window of 128 tokens
    return compare(m, openvino_models(m), metrics=metrics, batch=batch, batch_size=1, repeat=repeat,
                   threads=threads)


def main() -> None:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    out = {}
    for name in MODELS:
        t = backend_table(name, batch_size=32, repeat=REPEAT, threads=THREADS)
        out[name] = _rows(t)
        print(t, f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
    t = lm_table()
    out[LM] = _rows(t)
    print(t, f"\n({time.perf_counter() - t0:.0f} s)\n", flush=True)
    path = cache.save(CACHE, out, script="scripts/backend_tables.py",
                      params={"models": [*MODELS, LM], "batch_size": 32, "repeat": REPEAT, "threads": THREADS,
                              "lm_windows": LM_WINDOWS, "lm_window": 512, "lm_timing": "1 x 128 tokens"})
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
