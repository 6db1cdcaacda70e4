"""The ``qlab`` command.

``qlab compare --model smollm2-135m --formats q8_0,q6_k,q5_0,q4_k,q4_0,nf4,fp8_e4m3,mxfp4,int4``
quantizes the model with every format (weight-only, simulated), prints the size-vs-accuracy table
(bits per weight, MB, perplexity, KL divergence and top-1 agreement against the float model) and
writes the Pareto plot. Results are cached (``$QLAB_CACHE`` or ``~/.cache/qlab``), so running it
again, or with one more format, only measures what is new.

``--backend`` measures on a real runtime instead of the simulation: ``--backend llamacpp`` writes
each format as a GGUF file with qlab's encoders and scores it inside llama.cpp (same tokens, same
table); ``--backend torch_native|onnxruntime|bitsandbytes|all`` prints the backend table of the
model (each runtime's own quantization schemes: bytes, accuracy, latency as a ratio to the float
model) and writes its bar plot.

``qlab doctor`` checks the install (package versions against ``requirements.lock``, CPU features,
the llama.cpp build flags, a smoke test of every runtime), one line per check with the fix.

``qlab quantize --model smollm2-135m --recipe q4_k_m`` prints the per-tensor report of one recipe
(format asked for and used, llama.cpp's fallbacks, bytes, SQNR).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

DEFAULT_FORMATS = "q8_0,q6_k,q5_0,q4_k,q4_0,nf4,fp8_e4m3,mxfp4,int4"
LLAMACPP_FORMATS = "q8_0,q6_k,q5_0,q4_k,q4_0"
RUNTIMES = ("torch_native", "onnxruntime", "bitsandbytes", "openvino", "all")


def _formats(arg: str) -> list[str]:
    names = [f.strip() for f in arg.split(",") if f.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one format, e.g. --formats q8_0,q4_0")
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qlab", description="qlab: measure quantization formats on real models.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compare", help="size-vs-accuracy table and Pareto plot of several formats")
    c.add_argument("--model", default="smollm2-135m", help="zoo name or path (default: smollm2-135m)")
    c.add_argument("--formats", type=_formats, default=None,
                   help=f"comma-separated formats or llama.cpp mixes (default: {DEFAULT_FORMATS})")  # fmt: skip
    c.add_argument("--backend", default="simulated", choices=("simulated", "llamacpp", *RUNTIMES),
                   help="where to measure: qlab's simulation (default), llama.cpp, or a runtime's own schemes")
    c.add_argument("--batch-size", type=int, default=32, help="runtime backends: batch of the timing (default 32)")
    c.add_argument("--repeat", type=int, default=20, help="runtime backends: timed calls per model (default 20)")
    c.add_argument("--metric", default=None, help="y-axis of the Pareto plot (default: kl for LLMs)")
    c.add_argument("--window", type=int, default=512, help="tokens per window (default 512)")
    c.add_argument("--windows", type=int, default=16, help="number of windows (default 16)")
    c.add_argument("--exclude", action="append", default=None, help="fnmatch pattern of weights to keep float")
    c.add_argument("--out", default="pareto.png", help="Pareto plot file (default pareto.png; '' for none)")
    c.add_argument("--cache-dir", default=None, help="result cache (default $QLAB_CACHE or ~/.cache/qlab)")
    c.add_argument("--no-cache", action="store_true", help="measure everything again, store nothing")
    c.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    c.add_argument("--protocol", default="full-window", choices=("full-window", "llama-perplexity"),
                   help="perplexity protocol of LMs: qlab's full-window (default) or llama.cpp's llama-perplexity")
    c.add_argument("--report", default=None, metavar="FILE.json|FILE.csv",
                   help="LMs: write every format's full KL report (llama-perplexity --kl-divergence's statistics)")

    d = sub.add_parser("doctor", help="check the install: versions vs the lock, CPU, runtimes, smoke tests")
    d.add_argument("--no-smoke", action="store_true", help="skip the smoke tests of the runtimes (instant)")

    q = sub.add_parser("quantize", help="per-tensor report of one recipe (formats used, fallbacks, SQNR)")
    q.add_argument("--model", default="smollm2-135m")
    q.add_argument("--recipe", default="q4_k_m", help="format name or llama.cpp mix (default q4_k_m)")
    q.add_argument("--rows", type=int, default=None, help="show only the first N tensors")
    return p


def _compare(a: argparse.Namespace) -> int:
    from .files import write_json
    from .models import clear_cache, load

    if a.backend in RUNTIMES:
        return _compare_runtimes(a)
    m = load(a.model)
    if m.kind == "causal-lm":  # LM evaluation never calls m.fresh(): drop the per-process template,
        clear_cache()  # a second float32 copy of the weights (540 MB of SmolLM2's peak memory)
    if m.kind != "causal-lm" and (a.report or a.protocol != "full-window"):
        raise ValueError(f"--report and --protocol apply to causal LMs; {m.name} is a {m.kind!r} model")
    if a.report and not a.report.lower().endswith((".json", ".csv")):
        raise ValueError(f"--report {a.report!r}: give a .json or .csv file")
    reports: dict | None = {} if a.report else None
    where = f", {a.windows} x {a.window} tokens of WikiText-2 ({a.protocol})" if m.kind == "causal-lm" else ""
    if a.backend == "llamacpp":
        from .backends.llamacpp import sweep as llama_sweep

        if a.exclude:
            raise ValueError("--exclude is not supported with --backend llamacpp")
        res = llama_sweep(m, a.formats or _formats(LLAMACPP_FORMATS), a.metric or "kl", window=a.window,
                          windows=a.windows, progress=True, protocol=a.protocol, reports=reports)  # fmt: skip
        print(f"{m.name}: GGUF files written by qlab, run by llama.cpp{where}; KL and top-1 against qlab's float model")
    else:
        from .analysis.sweep import sweep

        res = sweep(
            m, a.formats or _formats(DEFAULT_FORMATS), a.metric, window=a.window, windows=a.windows,
            exclude=a.exclude, cache=not a.no_cache, cache_path=a.cache_dir, progress=True,
            protocol=a.protocol, reports=reports,
        )  # fmt: skip
        print(f"{m.name}: weight-only quantization, simulated{where}; KL and top-1 against the float model")
    print(res.table())
    print("pareto: * = no other format is both smaller and more accurate (by " + res.metric + ")")
    if a.out:
        res.plot(path=a.out)
        print(f"wrote {a.out}")
    if a.json:
        write_json(a.json, res.to_dict(), indent=1, default=float)
    if reports is not None:
        from .core.klreport import save_reports

        save_reports(a.report, reports)
        print(f"wrote {a.report}: the KL reports of {', '.join(reports)}")
    return 0


def _compare_runtimes(a: argparse.Namespace) -> int:
    from .backends.compare import backend_table
    from .files import write_json

    if a.formats:
        raise ValueError(f"--backend {a.backend} measures each runtime's own schemes; --formats applies to the "
                         "simulated and llamacpp backends")  # fmt: skip
    table = backend_table(a.model, a.backend, batch_size=a.batch_size, repeat=a.repeat)
    print(table)
    if a.out:
        table.plot(path=a.out)
        print(f"wrote {a.out}")
    if a.json:
        write_json(a.json, {"model": table.model, "metrics": table.metrics, "rows": table.rows}, indent=1, default=float)
    return 0


def _quantize(a: argparse.Namespace) -> int:
    from .models import load
    from .quantize import quantize_model

    m = load(a.model)
    print(quantize_model(m, a.recipe, progress=True).table(a.rows))
    return 0


def _doctor(a: argparse.Namespace) -> int:
    from .doctor import main as doctor

    return doctor(smoke=not a.no_smoke)


def passive_openmp() -> bool:
    """Let torch's OpenMP threads sleep between parallel regions instead of spinning
    (``OMP_WAIT_POLICY=PASSIVE``, an environment variable of the OpenMP specification) unless the user chose a policy.

    A forward pass runs thousands of short parallel regions. With GNU OpenMP's default
    (spin, then sleep), on a machine whose cores are shared with other work each region waits
    for a thread the kernel has descheduled while the others burn the CPU spinning: measured on
    a 2-core machine at load 5-9, a SmolLM2 forward took 3x the wall time and 3x the CPU time of
    the passive policy (issue 13 item 4); on an idle machine the difference is a futex wake per
    region (microseconds). Only effective before torch is imported (OpenMP reads it once):
    returns whether it was set.
    """
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qlab`` console script."""
    passive_openmp()
    a = _parser().parse_args(argv)
    try:
        return {"compare": _compare, "quantize": _quantize, "doctor": _doctor}[a.command](a)
    except (ValueError, FileNotFoundError) as e:
        print(f"qlab {a.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
