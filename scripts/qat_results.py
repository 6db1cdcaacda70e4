"""Lesson 09 cache: QAT (STE, LSQ, with and without distillation) vs PTQ on digits-cnn.

    python scripts/qat_results.py            # writes data/cache/qat_results.json

Every QAT row fine-tunes a fresh digits-cnn for ``EPOCHS`` epochs on its training split with
``QATConfig(weights=f"int{b}", activations=f"int{b}", method=..., distill=...)`` (seed 0) and
reports the test accuracy after convert; PTQ rows calibrate min-max ranges on 256 training images.
One CPU thread, so the run is reproducible (``qlab.viz.qat.run_qat`` recomputes any row).
"""

from __future__ import annotations

import time

import torch

from qlab import cache
from qlab.viz.qat import CACHE, METHODS, run_ptq, run_qat

BITS = (4, 2)
EPOCHS = 3


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rows = []
    for bits in BITS:
        rows.append(run_ptq(bits))
        for method in METHODS:
            for distill in (False, True):
                rows.append(run_qat(method, bits, distill, epochs=EPOCHS))
                r = rows[-1]
                print(f"W{bits}A{bits} {method:<4} distill={distill!s:<5} accuracy {r['accuracy']:.4f} "
                      f"({r['seconds']:.0f} s)", flush=True)
    path = cache.save(CACHE, rows, script="scripts/qat_results.py",
                      params={"bits": list(BITS), "epochs": EPOCHS, "methods": list(METHODS), "seed": 0,
                              "threads": 1, "ptq": "minmax, 256 training images"})
    print(f"wrote {path} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
