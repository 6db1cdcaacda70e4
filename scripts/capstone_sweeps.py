"""Lesson 13 (capstone) caches: size-vs-accuracy sweeps of the three zoo models over qlab's formats.

Writes ``data/cache/capstone_<model>.json`` (``capstone_digits_cnn``, ``capstone_minilm_l6``,
``capstone_smollm2_135m``) with :func:`qlab.cache.save`: one row per format, the float reference
first. Every row is simulated weight-only quantization of all Linear / Conv / Embedding weights
(:func:`qlab.analysis.sweep.sweep`, which also caches each row under ``$QLAB_CACHE``, so an
interrupted run resumes where it stopped).

* digits-cnn: test accuracy, every weight format (all of ``qlab.formats.names()`` except ``e8m0``,
  an unsigned power-of-two *scale* format that cannot hold a weight).
* minilm-l6: embedding cosine similarity and top-10 retrieval overlap with the fp32 model on
  the first 256 WikiText-2 test sentences (as lesson 12's backend table), every weight format.
* smollm2-135m: perplexity (and KL / top-1 against the float model) on 16 windows of 512 tokens of
  WikiText-2 -- about a minute per format on two cores, so a representative dozen formats.

Usage: ``python scripts/capstone_sweeps.py [--models digits-cnn,minilm-l6,smollm2-135m]``
(about 30-40 minutes on two idle cores, most of it SmolLM2).
"""

from __future__ import annotations

import argparse
import time

import qlab
from qlab.analysis.sweep import sweep

SCRIPT = "scripts/capstone_sweeps.py"

#: formats that are not weight formats (e8m0 has no sign and no mantissa: a block scale only)
NOT_WEIGHT_FORMATS = ("e8m0",)

#: SmolLM2: one or two formats per family, from 8.5 down to 2.6 bits per weight. q4_1 is left
#: out on purpose: the shipped "float" model is a dequantized Q4_1 file, so q4_1 looks lossless.
SMOL_FORMATS = ["q8_0", "int8", "fp8_e4m3", "q6_k", "q5_k", "q4_k", "q4_0", "nf4", "mxfp4", "iq4_xs",
                "q3_k", "q2_k"]  # fmt: skip

MODELS = {
    "digits-cnn": {"metric": "accuracy", "eval": {}},
    # 256 sentences, as qlab.backends.compare.default_metrics (lesson 12) measures MiniLM
    "minilm-l6": {"metric": "top10_overlap", "eval": {"n": 256}},
    "smollm2-135m": {"metric": "perplexity", "window": 512, "windows": 16},
}


def weight_formats() -> list[str]:
    return [f for f in qlab.formats.names() if f not in NOT_WEIGHT_FORMATS]


def cache_name(model: str) -> str:
    return "capstone_" + model.replace("-", "_")


def clean_row(r: dict) -> dict:
    """The JSON row the lesson reads: sizes, the metrics (flattened), fallbacks, formats used."""
    keep = ("format", "bits_per_weight", "mb", "fallbacks", "used", "perplexity", "nll", "kl", "top1", "seconds")
    row = {k: r[k] for k in keep if k in r}
    row.update({k: float(v) for k, v in r.get("metrics", {}).items() if isinstance(v, int | float)})
    row["reference"] = bool(r.get("reference", False))
    if row["reference"]:
        row["format"] = "f32"
    return row


def run(model: str) -> None:
    spec = MODELS[model]
    m = qlab.models.load(model, progress=False)
    lm = m.kind == "causal-lm"
    formats = SMOL_FORMATS if lm else weight_formats()
    t0 = time.perf_counter()
    if lm:
        res = sweep(m, formats, "perplexity", window=spec["window"], windows=spec["windows"], progress=False)
        params = {"window": spec["window"], "windows": spec["windows"], "text": "WikiText-2 test"}
    else:
        res = sweep(m, formats, spec["metric"], eval_kwargs=spec["eval"], progress=False)
        params = {"evaluate": spec["eval"] or "default"}
    rows = [clean_row(r) for r in res.rows]
    params = {"model": model, "metric": spec["metric"], "formats": formats,
              "n_params": int(m.num_parameters), **params}  # fmt: skip
    p = qlab.cache.save(cache_name(model), rows, script=SCRIPT, params=params)
    print(f"{model}: {len(rows)} rows in {time.perf_counter() - t0:.0f} s -> {p}", flush=True)
    print(res.table(), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo names")
    a = ap.parse_args()
    for model in a.models.split(","):
        run(model.strip())


if __name__ == "__main__":
    main()
