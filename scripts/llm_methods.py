"""RTN vs AWQ vs GPTQ on SmolLM2-135M at 4 and 3 bits, per group of 32 and per channel.

Writes ``data/cache/llm_methods.json`` (lesson 10 reads it through
:func:`qlab.viz.gptq.methods_rows` and :func:`qlab.viz.gptq.methods_text`): one row per method x bits x granularity plus the float
model, each with

* ``bits_per_weight``: bits per quantized weight, scales and zero-points included
  (``8 * sum(Encoded.nbytes) / weights`` over the decoder Linears), and ``model_bpw``: over the
  whole model with the embedding (tied with the output layer) and norms kept in float32;
* ``perplexity``, ``kl`` (mean KL), ``top1`` (top-1 agreement) on WikiText-2 (full-window protocol, window 512,
  16 windows; :func:`qlab.eval.compare` against the float model in one pass);
* ``seconds``: the quantization time (calibration included) and the machine's load average.

Integers are asymmetric (zero-point, as the GPTQ and AWQ papers); every method quantizes the 210
decoder Linears and keeps ``lm_head``/embedding in float. GPTQ and AWQ calibrate on
``qlab.eval.calibration_text(...)`` (held-out WikiText, never the evaluated text). Rows already in
the cache with the same parameters are kept (the script resumes), so it can run in pieces::

    python scripts/llm_methods.py                 # everything (about an hour on 2 busy cores)
    python scripts/llm_methods.py --only gptq     # one method
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import torch

import qlab
from qlab.eval import calibration_text, compare, reference
from qlab.quantize import AWQConfig, GPTQConfig, PTQConfig

NAME = "llm_methods"
SCRIPT = "scripts/llm_methods.py"
INCLUDE = "model.layers.*"


def configs(bits: int, group: int | None, n_samples: int, seq_len: int) -> dict[str, Any]:
    common = {"weights": f"int{bits}", "group_size": group, "include": INCLUDE}
    return {
        "rtn": PTQConfig(activations=None, weight_options={"symmetric": False}, progress=False, **common),
        "awq": AWQConfig(n_samples=n_samples, seq_len=seq_len, progress=False, **common),
        "gptq": GPTQConfig(act_order=True, n_samples=n_samples, seq_len=seq_len, progress=False, **common),
    }


def measure(m: Any, ref: Any) -> dict[str, float]:
    c = compare(m, ref, progress=False)
    return {k: c[k] for k in ("perplexity", "kl", "top1")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("rtn", "awq", "gptq"), default=None)
    ap.add_argument("--n-samples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--calib-chars", type=int, default=400_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    params = {"window": 512, "windows": 16, "n_samples": args.n_samples, "seq_len": args.seq_len,
              "calibration": f"qlab.eval.calibration_text({args.calib_chars})", "threads": args.threads,
              "weights": "asymmetric int (zero-point)", "quantized": INCLUDE}  # fmt: skip
    try:
        old = qlab.cache.load(NAME)
        rows = old["rows"] if old.get("params") == params else []
    except FileNotFoundError:
        rows = []
    done = {(r["method"], r["bits"], r["group_size"]) for r in rows}
    text = calibration_text(args.calib_chars)
    m0 = qlab.models.load("smollm2-135m", progress=False)
    ref = reference(m0, window=512, windows=16, dtype=torch.float16, progress=False)
    if ("float", 32, None) not in done:
        rows.insert(0, {"method": "float", "bits": 32, "group_size": None, "bits_per_weight": 32.0, "model_bpw": 32.0,
                        "perplexity": ref.perplexity, "kl": 0.0, "top1": 1.0, "seconds": 0.0,
                        "load_avg": os.getloadavg()[0]})  # fmt: skip
    for group in (32, None):
        for bits in (4, 3):
            for method, cfg in configs(bits, group, args.n_samples, args.seq_len).items():
                if (method, bits, group) in done or (args.only and method != args.only):
                    continue
                m = m0.fresh()
                load0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                rep = qlab.quantize_(m, cfg, calibration=None if method == "rtn" else text)
                seconds = time.perf_counter() - t0
                qbytes = sum(r.nbytes for r in rep.layers)
                qparams = sum(r.params for r in rep.layers)
                row = {"method": method, "bits": bits, "group_size": group, "bits_per_weight": 8 * qbytes / qparams,
                       "model_bpw": rep.bits_per_weight, **measure(m, ref), "seconds": seconds,
                       "load_avg": round((load0 + os.getloadavg()[0]) / 2, 2), "config": rep.config.get("method", "")}  # fmt: skip
                rows.append(row)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
                qlab.cache.save(NAME, rows, script=SCRIPT, params=params)
                del m
    qlab.cache.save(NAME, rows, script=SCRIPT, params=params)


if __name__ == "__main__":
    main()
