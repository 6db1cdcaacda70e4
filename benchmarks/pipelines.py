"""The LLM pipelines' cost and the backends' speed, as ratios measured in one run.

    python benchmarks/pipelines.py [--threads 2] [--repeat 20] [--n-samples 16] [--skip-llm]

1. GPTQ and AWQ on the whole SmolLM2-135M (210 decoder Linears, int4 asymmetric, groups of 32,
   calibrated on ``--n-samples`` x 512 tokens of ``qlab.eval.calibration_text``): wall time
   against round-to-nearest of the same layers (target: under 10 minutes each on 2 cores). The
   machine's load average is printed with every timing (a shared machine slows everything).
2. MiniLM-L6 at batch 1 and batch 32: ONNX Runtime dynamic int8 vs ORT fp32, torch.ao dynamic
   int8 vs PyTorch fp32, bitsandbytes nf4 (4-bit) vs PyTorch fp32 -- every model called once per
   round, round-robin (:func:`qlab.backends.compare.measure_latency`), so the ratios compare the
   models under the same load.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import qlab
from qlab.backends import bitsandbytes as bnbb
from qlab.backends import onnxruntime as ortb
from qlab.backends import torch_native as tn
from qlab.backends.compare import batches, float_model, measure_latency, run_batch
from qlab.eval import calibration_text
from qlab.quantize import AWQConfig, GPTQConfig, PTQConfig


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def llm_times(n_samples: int) -> dict[str, float]:
    """Seconds to quantize the whole SmolLM2 with RTN, AWQ and GPTQ (int4, groups of 32)."""
    m0 = qlab.models.load("smollm2-135m", progress=False)
    text = calibration_text(400_000)
    common = {"weights": "int4", "group_size": 32, "include": "model.layers.*"}
    cfgs = {
        "rtn": PTQConfig(activations=None, weight_options={"symmetric": False}, progress=False, **common),
        "awq": AWQConfig(n_samples=n_samples, progress=False, **common),
        "gptq": GPTQConfig(act_order=True, n_samples=n_samples, progress=False, **common),
    }
    out = {}
    for name, cfg in cfgs.items():
        m = m0.fresh()
        t0 = time.perf_counter()
        qlab.quantize_(m, cfg, calibration=None if name == "rtn" else text)
        out[name] = time.perf_counter() - t0
        print(f"  {name:5s} {out[name]:8.1f} s   ({load()})", flush=True)
    return out


def backend_ratios(repeat: int, threads: int) -> None:
    m = qlab.models.load("minilm-l6", progress=False)
    models = [float_model(m), ortb.float_session(m), ortb.quantize_dynamic(m), tn.quantize_dynamic(m), bnbb.quantize(m, "nf4")]
    ref, ort32, ort8, tao8, bnb4 = (b.label for b in models)
    for bs in (1, 32):
        batch = batches(m, bs, bs, "eval")[0]
        lat = measure_latency({b.label: (lambda b=b, x=batch: run_batch(b.model, x)) for b in models}, repeat,
                              threads=threads)  # fmt: skip
        print(f"MiniLM, batch {bs} ({load()}):")
        for num, den in ((ort8, ort32), (tao8, ref), (bnb4, ref)):
            print(f"  {num}  vs  {den}: {lat[num] / lat[den]:.2f}x  ({1e3 * lat[num]:.2f} ms vs {1e3 * lat[den]:.2f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--n-samples", type=int, default=16, help="calibration windows of 512 tokens")
    ap.add_argument("--skip-llm", action="store_true", help="only the backend ratios")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {load()}\n")
    if not args.skip_llm:
        print(f"SmolLM2-135M, int4 groups of 32, {args.n_samples} x 512 calibration tokens:")
        t = llm_times(args.n_samples)
        print(f"  GPTQ / RTN: {t['gptq'] / t['rtn']:.1f}x   AWQ / RTN: {t['awq'] / t['rtn']:.1f}x   "
              f"GPTQ {t['gptq'] / 60:.1f} min, AWQ {t['awq'] / 60:.1f} min (target < 10 min each)\n")  # fmt: skip
    backend_ratios(args.repeat, args.threads)


if __name__ == "__main__":
    main()
