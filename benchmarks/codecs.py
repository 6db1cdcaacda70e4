"""Codec throughput: qlab beside the peers, measured in the same run on the same tensor.

    python benchmarks/codecs.py [--n 4096] [--repeat 3] [--formats q4_0,q4_k,...]

For every format: encode and decode speed in million values per second (Mv/s) on an n x n float32
tensor (standard normal, seed 0), the best of ``--repeat`` runs after one warm-up call (which also
compiles the numba kernels). Peers, where they offer the same format:

* gguf-py (``gguf.quants.quantize`` / ``dequantize``): legacy types, TQ, MXFP4; dequantize only for
  K-quants and IQ4;
* llama.cpp (``ggml_quantize_chunk`` from llama-cpp-python's libggml, one thread): every GGML type;
* bitsandbytes on CPU (``quantize_4bit`` / ``dequantize_4bit``): nf4, fp4_bnb;
* torch casts (``tensor.to(float8)`` and back): fp8_e4m3, fp8_e5m2; ml_dtypes casts for the other
  element-wise floats.

The ratio column is qlab's speed divided by the peer's (> 1: qlab is faster). ``--clock cpu`` times
with this process's CPU time instead of the wall clock: steadier on a machine shared with other
work, and still like with like, as every peer runs in this process (set ``NUMBA_NUM_THREADS=1``
so that qlab's kernels run on one thread, as llama.cpp does here).

A second table times ``encode(x, imatrix=w)`` (``--imatrix-formats``, by default the K-quants, IQ4
and the IQ lattice types; ``""`` skips it) against llama.cpp's ``ggml_quantize_chunk`` with the same
``quant_weights`` on one thread: ``w`` is a log-normal importance per column (seed 1). Types that
need an importance matrix (iq2_xxs, iq2_xs, iq1_s) are only in that table.
"""

from __future__ import annotations

import argparse
import ctypes
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import qlab

CLOCK: Callable[[], float] = time.perf_counter  # --clock cpu: time.process_time


def best_of(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (numba compilation, caches)
    times = []
    for _ in range(repeat):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return min(times)


# -- peers ------------------------------------------------------------------------------------------
def gguf_peer(name: str, x: np.ndarray):
    from gguf import GGMLQuantizationType, quants

    qt = GGMLQuantizationType[name.upper()]
    try:
        raw = quants.quantize(x, qt)
        enc = lambda: quants.quantize(x, qt)  # noqa: E731
    except NotImplementedError:
        enc = None
        raw = qlab.formats.get(name).encode(x).to_bytes()
        raw = np.frombuffer(raw, np.uint8).reshape(x.shape[0], -1)
    return "gguf-py", enc, lambda: quants.dequantize(raw, qt)


def _libggml() -> ctypes.CDLL | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    libdir = Path(llama_cpp.__file__).parent / "lib"
    for cand in sorted(libdir.glob("libggml-base.so*")) + sorted(libdir.glob("libggml.so*")):
        lib = ctypes.CDLL(str(cand))
        if hasattr(lib, "ggml_quantize_chunk"):
            lib.ggml_quantize_chunk.restype = ctypes.c_size_t
            lib.ggml_quantize_chunk.argtypes = [
                ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
            ]
            lib.ggml_quantize_init.argtypes = [ctypes.c_int]
            return lib
    return None


def llamacpp_peer(name: str, x: np.ndarray, w: np.ndarray | None = None):
    """llama.cpp's ``ggml_quantize_chunk`` on one thread (with ``quant_weights = w``)."""
    lib = _libggml()
    if lib is None:
        return None
    fmt = qlab.formats.get(name)
    lib.ggml_quantize_init(fmt.ggml_type)
    dst = np.empty(x.size // fmt.block_size * fmt.type_size, np.uint8)
    qw = None if w is None else w.ctypes.data

    def enc():
        lib.ggml_quantize_chunk(fmt.ggml_type, x.ctypes.data, dst.ctypes.data, 0, x.shape[0], x.shape[1], qw)

    enc()
    ours = fmt.encode(x, imatrix=w).to_bytes()
    same = dst.tobytes() == ours
    return f"llama.cpp 1 thread{'' if same else ' (BYTES DIFFER)'}", enc, None


def bnb_peer(name: str, x: np.ndarray):
    import bitsandbytes.functional as F
    import torch

    t = torch.from_numpy(x)
    qt = {"nf4": "nf4", "fp4_bnb": "fp4"}[name]
    q, state = F.quantize_4bit(t, blocksize=64, quant_type=qt)
    return (
        "bitsandbytes CPU",
        lambda: F.quantize_4bit(t, blocksize=64, quant_type=qt),
        lambda: F.dequantize_4bit(q, state),
    )


def cast_peer(name: str, x: np.ndarray):
    import torch

    tdt = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}.get(name)
    if tdt is not None:
        t = torch.from_numpy(x)
        q = t.to(tdt)
        return "torch cast", lambda: t.to(tdt), lambda: q.to(torch.float32)
    import ml_dtypes

    mdt = {
        "fp8_e3m4": ml_dtypes.float8_e3m4, "fp6_e2m3": ml_dtypes.float6_e2m3fn,
        "fp6_e3m2": ml_dtypes.float6_e3m2fn, "fp4_e2m1": ml_dtypes.float4_e2m1fn,
        "e8m0": ml_dtypes.float8_e8m0fnu, "bf16": ml_dtypes.bfloat16, "fp16": np.float16,
    }.get(name)
    if mdt is None:
        return None
    q = x.astype(mdt)
    return "ml_dtypes cast", lambda: x.astype(mdt), lambda: q.astype(np.float32)


def peers(name: str, x: np.ndarray) -> list:
    fam = qlab.formats.get(name).family
    out = []
    if fam == "gguf" or name == "mxfp4":
        out.append(gguf_peer(name, x))
        lc = llamacpp_peer(name, x)
        if lc:
            out.append(lc)
    elif fam == "codebook":
        out.append(bnb_peer(name, x))
    elif fam == "float":
        p = cast_peer(name, x)
        if p:
            out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", default=",".join(qlab.formats.names()))
    ap.add_argument("--imatrix-formats", default=",".join(IMATRIX_FORMATS))
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: this process's CPU time (steadier on a shared machine; every peer runs in-process)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    x = np.random.default_rng(0).standard_normal((args.n, args.n)).astype(np.float32)
    mv = x.size / 1e6
    print(f"qlab {qlab.__version__}: {args.n}x{args.n} float32, best of {args.repeat} ({args.clock} clock); "
          "Mv/s = million values / s")
    print(f"{'format':<11} {'qlab enc':>9} {'qlab dec':>9}   {'peer':<28} {'peer enc':>9} {'peer dec':>9} {'enc ratio':>9} {'dec ratio':>9}")
    for name in filter(None, args.formats.split(",")):
        fmt = qlab.formats.get(name)
        if getattr(fmt, "requires_imatrix", False):
            continue  # in the imatrix table
        enc = fmt.encode(x)
        te = best_of(lambda: fmt.encode(x), args.repeat)  # noqa: B023
        td = best_of(lambda: fmt.decode(enc), args.repeat)  # noqa: B023
        line = f"{name:<11} {mv / te:9.1f} {mv / td:9.1f}"
        ps = peers(name, x)
        if not ps:
            print(line)
        for i, (pname, penc, pdec) in enumerate(ps):
            pe = best_of(penc, args.repeat) if penc else None
            pd = best_of(pdec, args.repeat) if pdec else None
            cells = [
                f"{mv / pe:9.1f}" if pe else f"{'-':>9}",
                f"{mv / pd:9.1f}" if pd else f"{'-':>9}",
                f"{pe / te:9.2f}" if pe else f"{'-':>9}",
                f"{pd / td:9.2f}" if pd else f"{'-':>9}",
            ]
            prefix = line if i == 0 else " " * len(line)
            print(f"{prefix}   {pname:<28} " + " ".join(cells), flush=True)
    if args.imatrix_formats:
        imatrix_table(x, args.imatrix_formats.split(","), args.repeat)


IMATRIX_FORMATS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", "iq3_s", "iq3_xxs", "iq2_s",
                   "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s")  # fmt: skip


def imatrix_table(x: np.ndarray, names: list[str], repeat: int) -> None:
    """``encode(x, imatrix=w)`` beside llama.cpp's ``ggml_quantize_chunk(..., quant_weights=w)``."""
    w = np.exp(np.random.default_rng(1).normal(0, 1, x.shape[1])).astype(np.float32)
    mv = x.size / 1e6
    print("\nwith an importance matrix (log-normal per column), encode only; Mv/s")
    print(f"{'format':<11} {'qlab enc':>9}   {'peer':<28} {'peer enc':>9} {'enc ratio':>9}")
    for name in names:
        fmt = qlab.formats.get(name)
        te = best_of(lambda: fmt.encode(x, imatrix=w), repeat)  # noqa: B023
        line = f"{name:<11} {mv / te:9.1f}"
        lc = llamacpp_peer(name, x, w)
        if lc is None:
            print(line)
            continue
        pname, penc, _ = lc
        pe = best_of(penc, repeat)
        print(f"{line}   {pname:<28} {mv / pe:9.1f} {pe / te:9.2f}", flush=True)


if __name__ == "__main__":
    main()
