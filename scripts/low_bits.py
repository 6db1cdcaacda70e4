"""Lesson 11's cache: SmolLM2-135M perplexity at extreme low bits, mixed precision and 2:4 sparsity.

Writes ``data/cache/low_bits.json`` (rows saved after every measurement, so a partial run is
usable). Protocol: :func:`qlab.eval.perplexity` on WikiText-2 test, window=512, windows=16.
Calibration (mixed-precision sensitivity, Wanda's activation norms) reads only
:func:`qlab.eval.calibration_text`, held out from the evaluation windows.

    .venv/bin/python scripts/low_bits.py            # full run (about an hour on 2 quiet cores)
    .venv/bin/python scripts/low_bits.py --resume   # measure only the rows missing from the cache
    .venv/bin/python scripts/low_bits.py --by module   # one format per tensor (about 500 sensitivity passes)
    .venv/bin/python scripts/low_bits.py --quick    # smoke test: tiny windows, not saved
    .venv/bin/python scripts/low_bits.py --resume --only "2:4 wanda,int3 g32"   # just these rows, in this order
"""

from __future__ import annotations

import argparse
import time
import traceback
from typing import Any

import torch

import qlab
from qlab.quantize import WeightSnapshot, quantize_model
from qlab.quantize.mixed import mixed_precision, uniform_bytes
from qlab.quantize.sparsity import activation_norms, sparsify_model

G32 = {"granularity": "group", "group_size": 32, "symmetric": False}
UNIFORM = [
    ("q4_k", "q4_k", "4-bit K-quant"),
    ("q3_k", "q3_k", "3-bit K-quant"),
    ("int3 g32", ("int3", G32), "3-bit asymmetric integer, fp32 scale + uint8 zero-point per 32"),
    ("q2_k", "q2_k", "2-bit K-quant"),
    ("tq2_0", "tq2_0", "ternary, 2-bit codes"),
    ("tq1_0", "tq1_0", "ternary, 1.6875 bits/weight (5 trits per byte)"),
    ("int2 g32", ("int2", G32), "2-bit asymmetric integer (4 levels) per 32"),
]
# llama.cpp's K-quants need 256-wide rows: on SmolLM2's 576-wide rows q6_k/q4_k/q3_k/q2_k are stored as
# q8_0/q5_0/q4_0/q4_0, so below q3_k's size only q2_k (catastrophic) was cheaper and the mix at q3_k's
# budget could only return uniform q3_k. int3 g32 (4.25 bits, fits every row) gives it a 3-bit option.
CANDIDATES = ("q8_0", "q6_k", "q4_k", "q3_k", "q2_k", ("int3", G32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--resume", action="store_true", help="keep the cache's rows, measure only the missing ones")
    ap.add_argument("--only", default="", help="comma-separated stage names: measure only these, in this order")
    ap.add_argument("--by", default="type", help="sensitivity groups: module, block or type (one format each)")
    args = ap.parse_args()
    window, windows = (64, 1) if args.quick else (512, 16)
    sens = {"window": 32 if args.quick else 128, "windows": 1 if args.quick else 2, "by": args.by}
    m = qlab.models.load("smollm2-135m", progress=False)
    snap = WeightSnapshot(m)
    rows: list[dict[str, Any]] = []
    t0 = time.time()

    def record(name: str, kind: str, report: Any, note: str = "", **extra: Any) -> None:
        ppl = qlab.eval.perplexity(m, window=window, windows=windows, progress=False)
        row = {"name": name, "kind": kind, "perplexity": ppl, "total_bytes": int(report.total_bytes),
               "bits_per_weight": float(report.bits_per_weight), "note": note, **extra}  # fmt: skip
        rows.append(row)
        print(f"[{time.time() - t0:7.0f}s] {name:28s} ppl {ppl:10.3f}  {row['bits_per_weight']:.3f} bpw", flush=True)
        if not args.quick:
            qlab.cache.save("low_bits", rows, script="scripts/low_bits.py",
                            params={"model": "smollm2-135m", "window": window, "windows": windows,
                                    "sensitivity": {**sens, "text": "calibration_text()"},
                                    "wanda": {"seq_len": 512, "n_seq": 8, "text": "calibration_text()"},
                                    "candidates": [str(c) if isinstance(c, str) else [c[0], c[1]]
                                                   for c in CANDIDATES]})  # fmt: skip
        snap.restore(m)

    def fallbacks(rep: Any) -> str:
        fb = rep.by_format()
        return ", ".join(f"{k} x{v['tensors']}" for k, v in fb.items())

    def uniform(name: str) -> None:
        _, recipe, what = next(u for u in UNIFORM if u[0] == name)
        rep = quantize_model(m, recipe, source=snap)
        record(name, "uniform", rep, f"{what}; stored: {fallbacks(rep)}", fallback_tensors=len(rep.fallbacks))

    sensitivity: dict[str, Any] | None = None

    def mixed(base: str) -> None:
        # one sensitivity scan (on calibration_text) shared by every budget; base: a UNIFORM row name
        nonlocal sensitivity
        t = time.time()
        budget = uniform_bytes(m, next(u[1] for u in UNIFORM if u[0] == base))
        res = mixed_precision(m, budget, CANDIDATES, sensitivity, **sens)
        sensitivity = res.sensitivity
        rep = quantize_model(m, res.recipe, source=snap)
        assert rep.total_bytes <= budget
        record(f"mixed @ {base} bytes", "mixed", rep, f"stored: {fallbacks(rep)}", budget_bytes=budget,
               uniform=base, chosen=res.counts(), predicted_kl=res.predicted_delta,
               by=args.by, seconds=round(time.time() - t))  # fmt: skip

    norms: dict[str, Any] = {}

    def sparse(scoring: str, fmt: str | None) -> None:
        if scoring == "wanda" and not norms:
            norms.update(activation_norms(m, seq_len=128 if args.quick else 512, n_seq=2 if args.quick else 8))
        rep = sparsify_model(m, scoring, fmt, norms=norms or None)
        record(f"2:4 {scoring}" + (f" + {fmt}" if fmt else ""), "sparse", rep,
               f"blocks' Linear layers 2:4, kept values {fmt or 'f32'}; embedding {fmt or 'f32'}",
               sparsity=rep.sparsity)  # fmt: skip

    stages = [
        ("f32", lambda: record("f32", "reference", quantize_model(m, "f32"), "float reference")),
        ("q3_k", lambda: uniform("q3_k")), ("q2_k", lambda: uniform("q2_k")),
        ("int2 g32", lambda: uniform("int2 g32")), ("mixed @ int3 g32 bytes", lambda: mixed("int3 g32")),
        ("2:4 wanda", lambda: sparse("wanda", None)), ("2:4 magnitude", lambda: sparse("magnitude", None)),
        ("tq1_0", lambda: uniform("tq1_0")), ("q4_k", lambda: uniform("q4_k")),
        ("mixed @ q4_k bytes", lambda: mixed("q4_k")), ("2:4 wanda + q4_k", lambda: sparse("wanda", "q4_k")),
        ("2:4 wanda + q8_0", lambda: sparse("wanda", "q8_0")), ("int3 g32", lambda: uniform("int3 g32")),
        ("tq2_0", lambda: uniform("tq2_0")), ("2:4 magnitude + q4_k", lambda: sparse("magnitude", "q4_k")),
    ]  # fmt: skip
    done = set()
    if args.resume and not args.quick and qlab.cache.path("low_bits").exists():
        old = qlab.cache.load("low_bits")
        if (old["params"].get("window"), old["params"].get("windows")) == (window, windows):
            rows.extend(old["rows"])
            done = {r["name"] for r in rows}
            print(f"resuming: {len(done)} row(s) in the cache", flush=True)
    if args.only:
        by_name = dict(stages)
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise SystemExit(f"unknown stage(s) {unknown}; stages: {', '.join(by_name)}")
        stages = [(n, by_name[n]) for n in wanted]
    for name, stage in stages:
        if name in done:
            continue
        try:
            stage()
        except Exception:  # noqa: BLE001 - keep measuring the other rows; the log shows the failure
            traceback.print_exc()
            snap.restore(m)
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
