"""Lesson 6's cache: SmolLM2-135M perplexity with activation-outlier handling (W8A8).

Rows (``data/cache/llm_outliers.json``), all at the full protocol (WikiText-2 test, 16 windows of
512 tokens); every calibrated method uses the same first ``calibration_tokens`` tokens of
:func:`qlab.eval.calibration_text` (held out from the evaluation text):

* float32;
* W8A8 int8 static per-tensor activations (PTQ, min-max), without smoothing, and with SmoothQuant
  at alpha 0.25 / 0.5 / 0.75;
* W8A8 with dynamic per-token activations, without and with SmoothQuant (alpha 0.5);
* LLM.int8() at threshold 6 and plain int8 vector-wise (threshold = inf), with the outlier
  columns LLM.int8() met per layer during the evaluation.

Run: ``python scripts/llm_outliers.py [threads] [--resume]`` (about 30-60 min on 2 quiet CPU
cores; the two LLM.int8() rows take most of it). The file is rewritten after every row, so a
partial run leaves the rows measured so far; ``--resume`` keeps them and measures the rest.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

import qlab
import qlab.cache
import qlab.models
from qlab.eval import calibration_text, perplexity
from qlab.quantize import DynamicConfig, LLMInt8Config, PTQConfig, SmoothQuantConfig
from qlab.quantize.calibration import batches
from qlab.quantize.llm_int8 import outlier_report

WINDOW, WINDOWS, CAL_TOKENS = 512, 16, 2048
PARAMS = {"model": "smollm2-135m", "window": WINDOW, "windows": WINDOWS, "calibration_tokens": CAL_TOKENS,
          "calibration": "qlab.eval.calibration_text()", "weights": "int8 symmetric per output channel",
          "activations": "int8 asymmetric (qlab default), min-max range"}


def runs() -> list[tuple[str, str, Any]]:
    """(row name, activation scheme, config or None for float), the lesson's main rows first."""
    sq = lambda a, **kw: (f"SmoothQuant alpha={a}" + (" per-token" if kw else ""),  # noqa: E731
                          "dynamic per-token" if kw else "static per-tensor", SmoothQuantConfig(alpha=a, **kw))
    return [
        ("float32", "float", None),
        ("W8A8", "static per-tensor", PTQConfig(progress=False)),
        sq(0.5),
        ("LLM.int8 threshold=6", "per-token + fp16 outlier columns", LLMInt8Config(threshold=6.0)),
        ("int8 vector-wise (threshold=inf)", "per-token", LLMInt8Config(threshold=float("inf"))),
        sq(0.25),
        sq(0.75),
        ("W8A8 per-token", "dynamic per-token", DynamicConfig(granularity="token")),
        sq(0.5, activation_granularity="token"),
    ]


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1)
    m = qlab.models.load("smollm2-135m", progress=False)
    cal = batches(calibration_text(), m)[: CAL_TOKENS // 512]
    rows: dict[str, Any] = {"perplexity": [], "outliers": []}
    if "--resume" in sys.argv and qlab.cache.path("llm_outliers").exists():
        rows = qlab.cache.load("llm_outliers")["rows"]  # keep the rows measured before
    done = {r["name"] for r in rows["perplexity"]}
    for name, acts, cfg in runs():
        if name in done:
            continue
        t0 = time.perf_counter()
        q = m if cfg is None else m.fresh()
        if cfg is not None:
            kw = {"calibration_tokens": CAL_TOKENS} if isinstance(cfg, SmoothQuantConfig) else {}
            qlab.quantize_(q, cfg, calibration=None if isinstance(cfg, LLMInt8Config | DynamicConfig) else cal, **kw)
        ppl = perplexity(q, window=WINDOW, windows=WINDOWS, progress=False)
        row = {"name": name, "activations": acts, "alpha": getattr(cfg, "alpha", None),
               "threshold": getattr(cfg, "threshold", None), "perplexity": ppl,
               "seconds": round(time.perf_counter() - t0, 1)}
        if isinstance(cfg, LLMInt8Config) and cfg.threshold == 6.0:
            rows["outliers"] = [{k: r[k] for k in ("name", "in_features", "columns", "max_per_call", "tokens", "top")}
                                for r in outlier_report(q)]
            row["outlier_columns"] = sum(r["columns"] for r in rows["outliers"])
        if row["threshold"] == float("inf"):
            row["threshold"] = "inf"
        rows["perplexity"].append(row)
        print(f"{name:36s} {ppl:9.3f}  ({row['seconds']} s)", flush=True)
        qlab.cache.save("llm_outliers", rows, script="scripts/llm_outliers.py", params=PARAMS)
        del q


if __name__ == "__main__":
    main()
