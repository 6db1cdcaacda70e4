"""Beyond round-to-nearest on SmolLM2-135M (issue 14): HQQ vs RTN (and the cached AWQ/GPTQ rows).

Writes ``data/cache/beyond_rtn.json`` (and ``beyond_kv.json``, the KV section): one row per (section, method, bits, group), each with

* ``bits_per_weight`` over the quantized decoder Linears (codes + scales + zero-points, exact
  bytes from the report) and ``model_bpw`` over the whole model (embedding and norms in float32);
* ``perplexity``, ``kl`` (mean KL), ``top1`` on WikiText-2 against the float model in one pass
  (:func:`qlab.eval.compare`), the protocol of ``scripts/llm_methods.py`` (window 512, the 210
  decoder Linears quantized, ``lm_head``/embedding in float) but 4 windows by default instead of
  16 (``--windows``): on 2 cores shared with other work one 16-window evaluation took over 15
  minutes;
* ``seconds`` (quantization time) and the load average (2 cores shared with other work).

Sections (``--only``):

* ``hqq``: RTN (asymmetric int, min-max, fp32 scale + uint8 zero) vs HQQ (:mod:`qlab.quantize.hqq`,
  float zero-point optimized, fp16 scale + fp16 zero) at int4/int3 g32, int4 g64 and int2 g16 (576-wide rows: no g128). The
  float/RTN/AWQ/GPTQ g32 rows of ``data/cache/llm_methods.json`` are copied in (section
  ``llm_methods``, ``windows`` and ``source`` say so: 16 windows, so compare them with each other
  and HQQ with the RTN rows measured here, not across sections). SmolLM2's published weights are
  the dequantized Q4_1 file (groups of 32 on a 16-level grid with a float minimum), which HQQ's
  float zero-point at int4 g32 reproduces: ``hqq_minilm`` repeats the comparison on MiniLM's
  fp32 weights (all 40 Linears, the MiniLM protocol below).

* ``lowrank_minilm`` / ``lowrank_smollm2``: :mod:`qlab.quantize.lowrank` -- quantization alone
  (asymmetric int, groups of 32), truncated SVD alone (an energy target, fp16 factors) and both
  (LoRC: ``Q(W) + L R``, the SVD of the quantization error, fp16 factors), bytes exact. MiniLM:
  all 40 Linears, embedding cosine / top-10 overlap with fp32 on 256 WikiText sentences (the
  capstone's protocol); SmolLM2: the protocol above.

* ``rotation``: W4A16 / W4A8 / W4A4 (RTN: int4 per-channel asymmetric weights, per-token
  asymmetric dynamic activations on every decoder Linear's input) on the float model and on the
  model with rotations fused (:func:`qlab.quantize.rotation.rotate_model`: residual stream,
  value/output heads, online Hadamard on ``down_proj``'s input; Hadamard). The rotated model's ``lm_head`` is untied (float32), which
  ``model_bpw`` counts. RTN vs GPTQ at W4A16 (same grid) on the float model and after
  ``quantize_(m, RotationConfig(kind))``, Hadamard and random (:func:`rotation_gptq_jobs`).

* ``kv``: KV-cache quantization (:mod:`qlab.quantize.kvcache`, simulated: K after RoPE and V
  replaced by ``decode(encode(.))`` before attention) at context 512 (4 windows) and 2048 (1
  window) -- llama.cpp-like q8_0/q4_0 blocks of 32, int4 per token / per head, KIVI (keys per
  channel over the window, values per token), with and without a Hadamard on Q/K -- and llama.cpp
  itself (llama-cpp-python through qlab's isolated child, ``type_k = type_v`` f16/q8_0/q4_0, flash
  attention, on an f32 GGUF export of the same float model and on the reference's very tokens);
  ``bytes_per_token``: K and V over all 30 layers. Context 8192 (SmolLM2's trained context, 1
  window): the main formats only (``KV_LONG``: q8_0, q4_0 with and without the Hadamard, llama.cpp
  f16/q8_0/q4_0; not its ``no-rot`` variants, one llama.cpp row took 10-19 minutes here).

Rows already in the cache with the same parameters are kept (the script resumes)::

    nice -n 10 python scripts/beyond_rtn.py --only hqq
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import torch

import qlab
from qlab.eval import compare, reference
from qlab.quantize import HQQConfig, PTQConfig, lowrank
from qlab.quantize.recipes import Spec

NAME = "beyond_rtn"
NAME_KV = "beyond_kv"
SCRIPT = "scripts/beyond_rtn.py"
INCLUDE = "model.layers.*"
WINDOW = 512


def measure(m: Any, ref: Any) -> dict[str, float]:
    c = compare(m, ref, progress=False)
    return {k: float(c[k]) for k in ("perplexity", "kl", "top1")}


def report_row(rep: Any) -> dict[str, float]:
    qbytes = sum(r.nbytes for r in rep.layers)
    qparams = sum(r.params for r in rep.layers)
    return {"bits_per_weight": 8 * qbytes / qparams, "model_bpw": rep.bits_per_weight}


def hqq_jobs(section: str = "hqq", include: str | None = INCLUDE) -> list[tuple[dict[str, Any], Callable[[Any], Any]]]:
    """(row key, quantize function) of the HQQ section."""
    jobs = []
    for bits, group in ((4, 32), (3, 32), (4, 64), (2, 16)):
        rtn = PTQConfig(weights=f"int{bits}", activations=None, group_size=group, include=include,
                        weight_options={"symmetric": False}, progress=False)  # fmt: skip
        hqq = HQQConfig(weights=f"int{bits}", group_size=group, include=include)
        for method, cfg in (("rtn", rtn), ("hqq", hqq)):
            key = {"section": section, "method": method, "bits": bits, "group_size": group}
            jobs.append((key, lambda m, cfg=cfg: qlab.quantize_(m, cfg)))
    return jobs


def lowrank_jobs(section: str, include: str | None, plan: list[tuple[int | None, int | None, float | None]]) -> list:
    """(row key, function) of low-rank rows: ``(bits, rank, energy)`` per row; bits None = SVD
    alone, rank/energy None = quantization alone (asymmetric int, groups of 32), both = LoRC."""
    jobs = []
    for bits, rank, energy in plan:
        spec = None if bits is None else Spec(f"int{bits}", {"granularity": "group", "group_size": 32, "symmetric": False})
        method = "svd" if bits is None else "rtn" if rank is None else "rtn+lorc"
        key = {"section": section, "method": method, "bits": bits or 16, "group_size": 32 if bits else None,
               "rank": rank, "energy": energy}  # fmt: skip
        jobs.append((key, lambda m, spec=spec, rank=rank, energy=energy: lowrank.apply(
            m, include, spec=spec, rank=rank, energy=energy, dtype="float16")))
    return jobs


MINILM_PLAN = [(4, None, None), (3, None, None), (2, None, None), (None, None, 0.5), (None, None, 0.8),
               (None, None, 0.95), (4, 8, None), (3, 8, None), (3, 32, None), (2, 8, None), (2, 32, None)]
SMOL_PLAN = [(3, 16, None), (4, 16, None), (None, None, 0.95)]


def rotation_jobs() -> list:
    """W4A16 / W4A8 / W4A4 (RTN, int4 per channel asymmetric weights; activations per token,
    asymmetric, dynamic) without and with rotations fused (:mod:`qlab.quantize.rotation`)."""
    from qlab.quantize import DynamicConfig, rotation

    jobs = []
    for rot in ("none", "hadamard"):
        for abits in (16, 8, 4):
            if abits == 16:
                cfg: Any = PTQConfig(weights="int4", activations=None, include=INCLUDE, progress=False,
                                     weight_options={"symmetric": False})  # fmt: skip
            else:
                cfg = DynamicConfig(weights="int4", activations=f"int{abits}", granularity="token", include=INCLUDE,
                                    weight_options={"symmetric": False})  # fmt: skip
            key = {"section": "rotation", "method": f"rtn W4A{abits}", "bits": 4, "group_size": None, "rotation": rot}

            def fn(m: Any, cfg: Any = cfg, rot: str = rot) -> Any:
                if rot != "none":
                    rotation.rotate_model(m, kind=rot, seed=0, online=True)
                return qlab.quantize_(m, cfg)

            jobs.append((key, fn))
    return jobs


#: GPTQ as scripts/llm_methods.py runs it (its rows at 16 windows; these at this script's 4)
GPTQ_CALIB_CHARS, GPTQ_SAMPLES, GPTQ_SEQ = 400_000, 16, 512


def rotation_gptq_jobs() -> list:
    """RTN vs GPTQ (W4A16, int4 per channel asymmetric, as the ``rtn W4A16`` rows) on the float and
    the rotated model (``quantize_(m, RotationConfig(kind))`` first); GPTQ with act_order on
    ``qlab.eval.calibration_text(400000)``, 16 windows of 512 tokens (``llm_methods.py``'s settings).
    The ``rtn W4A16`` rows without and with the Hadamard are :func:`rotation_jobs`' (the same config)."""
    from qlab.eval import calibration_text
    from qlab.quantize import GPTQConfig, RotationConfig

    text: list[str] = []
    jobs = []
    for method in ("gptq", "rtn"):
        for rot in ("none", "hadamard", "random"):
            if method == "rtn" and rot != "random":
                continue  # measured by rotation_jobs
            if method == "gptq":
                cfg: Any = GPTQConfig(weights="int4", group_size=None, act_order=True, n_samples=GPTQ_SAMPLES,
                                      seq_len=GPTQ_SEQ, include=INCLUDE, progress=False)  # fmt: skip
            else:
                cfg = PTQConfig(weights="int4", activations=None, include=INCLUDE, progress=False,
                                weight_options={"symmetric": False})  # fmt: skip
            key = {"section": "rotation", "method": f"{method} W4A16", "bits": 4, "group_size": None, "rotation": rot}
            if method == "gptq":
                key["calibration"] = f"calibration_text({GPTQ_CALIB_CHARS}), {GPTQ_SAMPLES} x {GPTQ_SEQ}, act_order"

            def fn(m: Any, cfg: Any = cfg, rot: str = rot) -> Any:
                if rot != "none":
                    qlab.quantize_(m, RotationConfig(kind=rot, seed=0))
                if not isinstance(cfg, GPTQConfig):
                    return qlab.quantize_(m, cfg)
                if not text:
                    text.append(calibration_text(GPTQ_CALIB_CHARS))
                return qlab.quantize_(m, cfg, calibration=text[0])

            jobs.append((key, fn))
    return jobs


def kv_plan() -> list[tuple[str, Any, Any, bool]]:
    """(label, K spec, V spec, Hadamard on Q/K) of the simulated KV-cache rows."""
    from qlab.quantize.kvcache import KVSpec as S

    return [("q8_0", S("q8_0", "block32"), S("q8_0", "block32"), False),
            ("q4_0", S("q4_0", "block32"), S("q4_0", "block32"), False),
            ("q4_0 + hadamard", S("q4_0", "block32"), S("q4_0", "block32"), True),
            ("int4 per token", S("int4", "token"), S("int4", "token"), False),
            ("int4 per head", S("int4", "head"), S("int4", "head"), False),
            ("int4 per head + hadamard", S("int4", "head"), S("int4", "head"), True),
            ("kivi int4 (K channel, V token)", S("int4", "channel"), S("int4", "token"), False),
            ("kivi int2 (K channel, V token)", S("int2", "channel"), S("int2", "token"), False),
            ("int2 per head + hadamard", S("int2", "head"), S("int2", "head"), True)]  # fmt: skip


#: llama.cpp type_k = type_v (flash attention on, required for a quantized V); "no-rot": with
#: LLAMA_ATTN_ROT_DISABLE=1, which turns off the Hadamard rotation llama.cpp applies to attention
#: when the cache is quantized (the string "attn_rot_hadamard" is in the bundled libllama.so)
LLAMA_KV = ("f16", "q8_0", "q4_0", "q8_0 no-rot", "q4_0 no-rot")

#: contexts longer than this measure only the main formats: one 8192-token row took 2-4 minutes in
#: qlab and 10-19 minutes in llama.cpp (2 threads, load 5-12), so llama.cpp's no-rot rows are left out
LONG = 2048
KV_LONG = ("q8_0", "q4_0", "q4_0 + hadamard", "f16")


def kv_rows(rows: list[dict[str, Any]], m0: Any, params: dict[str, Any], contexts: list[tuple[int, int]],
            threads: int) -> None:  # fmt: skip
    """The KV section: qlab's simulated caches and llama.cpp's ``type_k``/``type_v`` at each
    (context, windows), KL against the float model on the same tokens."""
    import gguf

    from qlab.backends.llamacpp import export, run
    from qlab.quantize import kvcache

    done = {row_id(r) for r in rows}
    gguf_path = f"/tmp/qlab_beyond_{os.getuid()}_smollm2_f32.gguf"
    for ctx, windows in contexts:
        ref = None
        jobs: list[tuple[dict[str, Any], Any]] = []
        for label, k, v, rot in kv_plan():
            if ctx > LONG and label not in KV_LONG:
                continue
            jobs.append(({"section": "kv", "method": label, "backend": "qlab", "context": ctx, "windows": windows,
                          "bytes_per_token": kvcache.bytes_per_token(m0.model.config, k, v, ctx)}, (k, v, rot)))  # fmt: skip
        for t in LLAMA_KV:
            if ctx > LONG and t not in KV_LONG:
                continue
            spec = kvcache.KVSpec(None if t == "f16" else t.split()[0], "block32")
            jobs.append(({"section": "kv", "method": t, "backend": "llama.cpp", "context": ctx, "windows": windows,
                          "bytes_per_token": kvcache.bytes_per_token(m0.model.config, spec, spec, ctx)}, t))  # fmt: skip
        for key, what in jobs:
            if row_id(key) in done:
                continue
            if ref is None:
                ref = reference(m0, window=ctx, windows=windows, dtype=torch.float16, progress=False)
            t0 = time.perf_counter()
            if key["backend"] == "qlab":
                m = m0.fresh()
                kvcache.quantize_kv(m, what[0], what[1], rotate=what[2])
                got = measure(m, ref)
            else:
                if not os.path.exists(gguf_path):
                    export.export_gguf(m0, gguf_path, "f32")
                ty = int(getattr(gguf.GGMLQuantizationType, what.split()[0].upper()))
                env = {"LLAMA_ATTN_ROT_DISABLE": "1"} if what.endswith("no-rot") else {}
                os.environ.update(env)  # the llama.cpp child inherits the environment
                try:
                    c = run.compare(gguf_path, ref, type_k=ty, type_v=ty, flash_attn=True, threads=threads)
                finally:
                    for k in env:
                        os.environ.pop(k, None)
                got = {k: float(c[k]) for k in ("perplexity", "kl", "top1")}
            row = {**key, **got, "seconds": time.perf_counter() - t0, "threads": threads,
                   "load_avg": round(os.getloadavg()[0], 2)}  # fmt: skip
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            qlab.cache.save(NAME_KV, rows, script=SCRIPT, params=params)


def measure_minilm(m: Any, ref: Any) -> dict[str, float]:
    from qlab.eval.embedding import embedding_similarity

    c = embedding_similarity(m, n=MINILM_N, reference=ref)
    return {k: float(c[k]) for k in ("cosine_mean", "cosine_min", "top10_overlap")}


MINILM_N = 256  # sentences, as the capstone (scripts/capstone_sweeps.py) measures MiniLM


def cached_llm_methods() -> list[dict[str, Any]]:
    """AWQ/GPTQ rows of ``llm_methods.json`` (same protocol) at the HQQ section's bits and groups."""
    try:
        old = qlab.cache.load("llm_methods")
    except FileNotFoundError:
        return []
    p = old["params"]
    return [{**r, "section": "llm_methods", "windows": p.get("windows"), "source": "data/cache/llm_methods.json"}
            for r in old["rows"] if r["group_size"] == 32 or r["method"] == "float"]  # fmt: skip


def row_id(r: dict[str, Any]) -> tuple:
    keys = ("section", "method", "bits", "group_size", "rank", "energy", "rotation", "backend", "context")
    return tuple(r.get(k) for k in keys)


def run_jobs(jobs: list, rows: list[dict[str, Any]], m0: Any, ref: Any, params: dict[str, Any],
             measure_fn: Callable[[Any, Any], dict[str, float]] = measure) -> None:  # fmt: skip
    done = {row_id(r) for r in rows}
    for key, fn in jobs:
        if row_id(key) in done:
            continue
        m = m0.fresh()
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        rep = fn(m)
        seconds = time.perf_counter() - t0
        row = {**key, **report_row(rep), **measure_fn(m, ref), "seconds": seconds,
               "load_avg": round((load0 + os.getloadavg()[0]) / 2, 2)}  # fmt: skip
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        qlab.cache.save(NAME, rows, script=SCRIPT, params=params)
        del m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("hqq", "lowrank", "rotation", "kv"), default=None)
    ap.add_argument("--kv-contexts", default="512x4,2048x1,8192x1",
                    help="context x windows for the KV section (above 2048: the main formats only, KV_LONG)")  # fmt: skip
    ap.add_argument("--windows", type=int, default=4, help="WikiText windows of 512 tokens (llm_methods: 16)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.only == "kv":
        return kv_main(args)
    params = {"window": WINDOW, "windows": args.windows, "threads": args.threads, "quantized": INCLUDE,
              "rtn": "asymmetric int, min-max, fp32 scale + uint8 zero-point",
              "hqq": "qlab.quantize.hqq defaults (lp_norm 0.7, beta 10, iters 20), fp16 scale + fp16 zero"}  # fmt: skip
    try:
        old = qlab.cache.load(NAME)
        rows = old["rows"] if old.get("params") == params else []
    except FileNotFoundError:
        rows = []
    m0 = qlab.models.load("smollm2-135m", progress=False)
    ref = reference(m0, window=WINDOW, windows=args.windows, dtype=torch.float16, progress=False)
    if not any(r["method"] == "float" for r in rows):
        rows.insert(0, {"section": "float", "method": "float", "bits": 32, "group_size": None, "bits_per_weight": 32.0,
                        "model_bpw": 32.0, "perplexity": ref.perplexity, "kl": 0.0, "top1": 1.0, "seconds": 0.0})  # fmt: skip
    if not any(r.get("source") for r in rows):
        rows.extend(cached_llm_methods())
    if args.only in (None, "hqq"):
        run_jobs(hqq_jobs(), rows, m0, ref, params)
    if args.only in (None, "rotation"):
        run_jobs(rotation_jobs(), rows, m0, ref, params)
        run_jobs(rotation_gptq_jobs(), rows, m0, ref, params)
    if args.only in (None, "lowrank"):
        from qlab.core.text import wikitext_sentences
        from qlab.eval.embedding import reference_embeddings

        mini = qlab.models.load("minilm-l6", progress=False)
        eref = reference_embeddings(mini, wikitext_sentences(MINILM_N))
        if not any(r["section"] == "lowrank_minilm" and r["method"] == "float" for r in rows):
            rows.append({"section": "lowrank_minilm", "method": "float", "bits": 32, "group_size": None,
                         "bits_per_weight": 32.0, **measure_minilm(mini, eref)})  # fmt: skip
        run_jobs(lowrank_jobs("lowrank_minilm", None, MINILM_PLAN), rows, mini, eref, params, measure_minilm)
        run_jobs(hqq_jobs("hqq_minilm", None), rows, mini, eref, params, measure_minilm)
        run_jobs(lowrank_jobs("lowrank_smollm2", INCLUDE, SMOL_PLAN), rows, m0, ref, params)
    qlab.cache.save(NAME, rows, script=SCRIPT, params=params)
    if args.only is None:
        kv_main(args)


def kv_main(args: argparse.Namespace) -> None:
    """The KV section, in its own cache (``data/cache/beyond_kv.json``) so that it can run beside the others."""
    contexts = [(int(a), int(b)) for a, b in (c.split("x") for c in args.kv_contexts.split(","))]
    params = {"reference": "float SmolLM2, fp16 logits", "threads": "per row (1 for the rows measured first)"}
    try:
        old = qlab.cache.load(NAME_KV)
        same = old.get("params", {}).get("reference") == params["reference"]
        # rows are keyed by context and method (and carry their windows and threads): a new context
        # adds rows, the ones measured before are kept (they ran with threads=1, the cache said so)
        threads0 = old.get("params", {}).get("threads")
        rows = [{**r, "threads": r.get("threads", threads0)} for r in old["rows"]] if same else []
    except FileNotFoundError:
        rows = []
    done = sorted({f"{r['context']}x{r['windows']}" for r in rows} | set(args.kv_contexts.split(",")),
                  key=lambda c: int(c.split("x")[0]))  # fmt: skip
    params["contexts"] = ",".join(done)
    m0 = qlab.models.load("smollm2-135m", progress=False)
    kv_rows(rows, m0, params, contexts, args.threads)
    qlab.cache.save(NAME_KV, rows, script=SCRIPT, params=params)


if __name__ == "__main__":
    main()
