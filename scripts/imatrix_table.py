"""Lesson 16's cache: what an importance matrix buys SmolLM2-135M, per GGML type and calibration domain.

Writes ``data/cache/imatrix_table.json``: one row per (type, imatrix) with perplexity, KL and top-1
agreement against the float model (:func:`qlab.eval.reference` / :func:`qlab.eval.compare`,
WikiText-2 test, ``--window`` x ``--windows`` tokens; the lessons' protocol is 512 x 16), bits per
weight and the types actually stored. Simulated weight-only quantization
(``quantize_model(m, type, imatrix=...)``), whose weights equal the bytes ``export_gguf`` writes.

Importance matrices (:func:`qlab.quantize.collect_imatrix`, ``--imatrix-windows`` windows of 512):

* ``wiki``: :func:`qlab.eval.calibration_text` (held-out second half of WikiText-2 test);
* ``code``: Python source of the standard library (a different domain, offline, deterministic:
  the modules of ``CODE_MODULES`` in order);
* ``none``: no imatrix (not for iq2_xxs / iq2_xs / iq1_s, which llama.cpp refuses without one).

SmolLM2's 576-wide rows are not whole 256-value super-blocks, so every type with 256-blocks
(K-quants and IQ lattices) reaches only ``ffn_down`` (1536 columns); the other matrices take
llama.cpp's fallback (IQ* -> IQ4_NL, Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0), also with the imatrix.

Rows are saved as they finish; a rerun measures only the missing ones (``--fresh`` starts over).
Imatrices are kept as llama.cpp GGUF files in ``--workdir``.

    nice -n 10 .venv/bin/python scripts/imatrix_table.py    # ~1-2 min per row on 2 shared cores
    .venv/bin/python scripts/imatrix_table.py --quick                # smoke test, not saved
"""

from __future__ import annotations

import argparse
import os
import sysconfig
import time
from pathlib import Path
from typing import Any

import qlab
from qlab.quantize import WeightSnapshot, collect_imatrix, load_imatrix, quantize_model

SCRIPT = "scripts/imatrix_table.py"
TYPES = ["iq3_s", "iq2_xxs", "q2_k", "q3_k", "q4_k", "iq3_xxs", "iq2_xs", "iq2_s", "iq1_s", "iq1_m", "iq4_xs"]  # most telling first
NEEDS_IMATRIX = {"iq1_s", "iq2_xxs", "iq2_xs"}
IMATRICES = ("none", "wiki", "code")
CODE_MODULES = ["argparse", "dataclasses", "inspect", "typing", "functools", "collections/__init__", "pathlib",
                "json/decoder", "json/encoder", "subprocess", "tarfile", "zipfile/__init__", "logging/__init__",
                "ast", "enum", "textwrap", "difflib", "shutil", "tempfile", "random"]  # fmt: skip


def code_text(chars: int = 400_000) -> str:
    """The first ``chars`` characters of the standard-library modules of ``CODE_MODULES``, concatenated."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = [(root / f"{m}.py").read_text(encoding="utf-8") for m in CODE_MODULES if (root / f"{m}.py").is_file()]
    text = "\n\n".join(parts)
    if len(text) < chars // 2:
        raise RuntimeError(f"only {len(text)} characters of standard-library source found under {root}")
    return text[:chars]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--imatrix-windows", type=int, default=32)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--workdir", default=os.environ.get("QLAB_CACHE", str(Path.home() / ".cache" / "qlab")))
    ap.add_argument("--fresh", action="store_true", help="ignore the rows already in the cache")
    ap.add_argument("--quick", action="store_true", help="tiny protocol, nothing saved")
    args = ap.parse_args()
    window, windows = (64, 1) if args.quick else (args.window, args.windows)
    imx_windows = 2 if args.quick else args.imatrix_windows
    types = [t for t in args.types.split(",") if t]
    work = Path(args.workdir) / "imatrix"
    work.mkdir(parents=True, exist_ok=True)

    m = qlab.models.load("smollm2-135m", progress=False)
    snap = WeightSnapshot(m)
    params = {"model": "smollm2-135m", "window": window, "windows": windows, "text": "WikiText-2 test",
              "imatrix": {"window": 512, "windows": imx_windows, "wiki": "qlab.eval.calibration_text()",
                          "code": f"Python {sysconfig.get_python_version()} stdlib: {', '.join(CODE_MODULES)}"},
              "simulation": "quantize_model(m, type, imatrix=...): weights equal export_gguf's bytes"}  # fmt: skip
    rows: list[dict[str, Any]] = []
    if not args.fresh and not args.quick and qlab.cache.path("imatrix_table").exists():
        old = qlab.cache.load("imatrix_table")
        if old["params"] == params:
            rows = old["rows"]
    done = {(r["type"], r["imatrix"]) for r in rows}
    t0 = time.time()

    imatrices: dict[str, Any] = {}

    def imatrix(name: str) -> Any:
        if name == "none":
            return None
        if name not in imatrices:
            path = work / f"smollm2-135m-{name}-{imx_windows}x512.imatrix.gguf"
            if path.is_file() and not args.quick:
                imatrices[name] = load_imatrix(path)
            else:
                text, label = (None, None) if name == "wiki" else (code_text(), "python-stdlib")
                imx = collect_imatrix(m, text, window=512, windows=imx_windows, dataset=label, progress=False)
                if not args.quick:
                    imx.save(path)
                imatrices[name] = imx
            print(f"[{time.time() - t0:7.0f}s] imatrix {name}: {len(imatrices[name])} tensors", flush=True)
        return imatrices[name]

    ref = qlab.eval.reference(m, window=window, windows=windows, progress=False)
    if ("f32", "none") not in done:
        rows.append({"type": "f32", "imatrix": "none", "bits_per_weight": 32.0, "stored": "f32",
                     **qlab.eval.compare(m, ref, progress=False)})  # fmt: skip
    for fmt in types:
        for name in IMATRICES:
            if (fmt, name) in done or (name == "none" and fmt in NEEDS_IMATRIX):
                continue
            t = time.time()
            rep = quantize_model(m, fmt, source=snap, imatrix=imatrix(name))
            res = qlab.eval.compare(m, ref, progress=False)
            stored = ", ".join(f"{k} x{v['tensors']}" for k, v in rep.by_format().items())
            row = {"type": fmt, "imatrix": name, "bits_per_weight": float(rep.bits_per_weight), "stored": stored,
                   "seconds": round(time.time() - t, 1), **res}  # fmt: skip
            rows.append(row)
            print(f"[{time.time() - t0:7.0f}s] {fmt:8s} {name:5s} ppl {res['perplexity']:9.3f} "
                  f"kl {res['kl']:.4f} {row['bits_per_weight']:.3f} bpw  [{stored}]", flush=True)  # fmt: skip
            if not args.quick:
                qlab.cache.save("imatrix_table", rows, script=SCRIPT, params=params)
            snap.restore(m)


if __name__ == "__main__":
    main()
