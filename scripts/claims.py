"""Lesson 15 cache: the measurements behind the course-text claims that take minutes on 2 cores.

    python scripts/claims.py            # writes data/cache/claims.json (about 5 minutes, 2 cores)

* ``gptq``: MiniLM-L6's encoder Linear layers to asymmetric int4, groups of 32, by layer-wise GPTQ
  (Hessians from 128 calibration sentences, :func:`qlab.analysis.claims.gptq_encoder_row`) and by
  round-to-nearest, with cosine / top-10 overlap against the fp32 encoder (256 sentences).
* ``pruning``: N:M pruning of MiniLM-L6 and digits-cnn (3:4, 5:8, 2:4; magnitude and Wanda), alone
  and followed by int8 / q4_0 of every weight (:func:`qlab.analysis.claims.pruning_row`).
Two CPU threads, seeded; the lesson recomputes the digits rows live and checks them against this file.
"""

from __future__ import annotations

import time

import torch

from qlab import cache
from qlab.analysis.claims import gptq_encoder_row, pruning_row

PRUNING = [
    (n, m, scoring, fmt)
    for fmt in (None, "int8", "q4_0")
    for n, m, scoring in ((4, 4, "magnitude"), (3, 4, "magnitude"), (5, 8, "magnitude"), (2, 4, "magnitude"), (2, 4, "wanda"))
]


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    gptq = []
    for method in ("rtn", "gptq"):
        gptq.append(gptq_encoder_row("minilm-l6", 4, 32, method))
        print(method, {k: round(v, 4) if isinstance(v, float) else v for k, v in gptq[-1].items()}, flush=True)
    pruning = []
    for name in ("digits-cnn", "minilm-l6"):
        for n, m, scoring, fmt in PRUNING:
            if scoring == "wanda" and name == "digits-cnn":
                continue  # Wanda's activation norms are defined for token inputs
            pruning.append(pruning_row(name, n, m, scoring, fmt))
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in pruning[-1].items()}, flush=True)
    path = cache.save("claims", {"gptq": gptq, "pruning": pruning}, script="scripts/claims.py",
                      params={"gptq": "int4 g32 asymmetric, 4 batches of 32 calibration sentences",
                              "quality": "256 WikiText-2 sentences (MiniLM), digits test split", "threads": 2})
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
