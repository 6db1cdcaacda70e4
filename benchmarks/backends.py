"""Real backends on real models: size, accuracy and latency as ratios measured in one run.

    python benchmarks/backends.py [--repeat 20] [--threads 1] [--sentences 256] [--plot DIR] [--skip-static]

MiniLM-L6 (sentence encoder) on every backend: PyTorch fp32 (the reference), torch.ao dynamic
int8, ONNX Runtime fp32 / dynamic int8 / static QDQ int8 (min-max) / MatMulNBits int4, and
bitsandbytes LLM.int8 / nf4. digits-cnn: torch.ao static int8, ORT static QDQ with each
calibration method, bitsandbytes.

Latency: median of ``--repeat`` rounds, every model called once per round (round-robin), so
the ratios compare models under the same machine load. MiniLM is timed at batch 1 and batch 32
(WikiText-2 sentences, padded to the longest); the ratios printed at the end are the ones the
issue asks for: ORT int8 vs fp32, torch.ao int8 vs fp32, bitsandbytes 4-bit vs fp32.
Accuracy: MiniLM cosine similarity to the fp32 embeddings and top-10 neighbour overlap
(``--sentences`` WikiText-2 sentences); digits test accuracy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from qlab.backends import bitsandbytes as bnbb
from qlab.backends import onnxruntime as ortb
from qlab.backends import torch_native as tn
from qlab.backends.compare import (
    BackendModel,
    batches,
    compare,
    default_metrics,
    float_model,
    measure_latency,
    run_batch,
)
from qlab.models import load


def minilm_models(m: Any, skip_static: bool) -> list[BackendModel]:
    out = [tn.quantize_dynamic(m), ortb.float_session(m), ortb.quantize_dynamic(m)]
    if not skip_static:
        out.append(ortb.quantize_static(m, batches(m, 64, 32), method="minmax"))
    out += [ortb.quantize_weight_only(m, "int4", block_size=32), bnbb.quantize(m, "int8"), bnbb.quantize(m, "nf4")]
    return out


def digits_models(m: Any) -> list[BackendModel]:
    cal = batches(m, 256, 64)
    out = [tn.quantize_static(m, cal), ortb.float_session(m)]
    out += [ortb.quantize_static(m, cal, method=k) for k in ortb.CALIBRATION_METHODS]
    return out + [bnbb.quantize(m, "int8"), bnbb.quantize(m, "nf4")]


def latency_rows(m: Any, models: list[BackendModel], batch_sizes: tuple[int, ...], repeat: int,
                 threads: int) -> dict[int, dict[str, float]]:
    """Seconds per call of every model at each batch size (one round-robin run per size)."""
    allm = [float_model(m), *models]
    out = {}
    for bs in batch_sizes:
        batch = batches(m, bs, bs, "eval")[0]
        lat = measure_latency({b.label: (lambda b=b, x=batch: run_batch(b.model, x)) for b in allm}, repeat,
                              threads=threads)
        out[bs] = lat
    return out


def ratio_line(lat: dict[str, float], num: str, den: str) -> str:
    return f"{num}  vs  {den}: {lat[num] / lat[den]:.2f}x  ({1e3 * lat[num]:.2f} ms vs {1e3 * lat[den]:.2f} ms)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every runtime while timing")
    ap.add_argument("--sentences", type=int, default=256, help="MiniLM evaluation sentences")
    ap.add_argument("--plot", type=Path, default=None, help="write the bar plots (PNG) into this directory")
    ap.add_argument("--skip-static", action="store_true", help="skip ORT static QDQ on MiniLM (slow calibration)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.repeat} rounds\n")

    # ---------------------------------------------------------------- MiniLM: table + batch 1 / 32
    m = load("minilm-l6", progress=False)
    models = minilm_models(m, args.skip_static)
    metrics = default_metrics(m, args.sentences)
    table = compare(m, models, metrics=metrics, batch_size=32, repeat=args.repeat, threads=args.threads)
    print(table, "\n")
    lat = latency_rows(m, models, (1, 32), args.repeat, args.threads)
    ref, ort32 = "torch: fp32 (reference)", next(b.label for b in models if b.scheme == "fp32")
    ort8 = next(b.label for b in models if b.backend == "onnxruntime" and b.scheme.startswith("dynamic"))
    tao8 = next(b.label for b in models if b.backend == "torch_native")
    bnb4 = next(b.label for b in models if b.backend == "bitsandbytes" and b.scheme.startswith("nf4"))
    for bs, lt in lat.items():
        print(f"MiniLM, batch {bs}:")
        for num, den in ((ort8, ort32), (ort8, ref), (ort32, ref), (tao8, ref), (bnb4, ref)):
            print("  " + ratio_line(lt, num, den))
    print()

    # ---------------------------------------------------------------------------------- digits
    d = load("digits-cnn", progress=False)
    dtable = compare(d, digits_models(d), batch_size=32, repeat=args.repeat, threads=args.threads)
    print(dtable, "\n")
    if args.plot:
        args.plot.mkdir(parents=True, exist_ok=True)
        table.plot(path=args.plot / "backends_minilm.png")
        dtable.plot(path=args.plot / "backends_digits.png")
        print(f"plots written to {args.plot}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
