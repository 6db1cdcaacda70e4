"""``qlab doctor``: what a learner runs when something is odd.

One line per check, each ``ok``, ``WARN`` or ``FAIL`` with the fix:

* Python, and every installed package against ``requirements.lock`` (when qlab runs from a
  checkout; as a library, the pins are not known and only the key versions are listed);
* the CPU's features and the flags llama-cpp-python was built with;
* which optional runtimes import, and a few-second smoke test of each real one: llama.cpp
  evaluates a few tokens of the SmolLM2 GGUF (in its child process, so a crash is a verdict, not
  the end of the doctor), an ONNX Runtime session, a bitsandbytes ``Linear4bit``, a ``torch.ao``
  dynamic int8 Linear, an OpenVINO int4 (NNCF-compressed) MatMul on the CPU plugin against qlab's
  simulation, and the headless Chromium of the browser test.

:func:`run` returns the :class:`Check` list; :func:`main` prints it and returns 1 if any failed.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

__all__ = ["Check", "cpu_flags", "lock_mismatches", "main", "read_lock", "run"]

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
README = 'README.md, "Troubleshooting"'
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_int8")


@dataclass(frozen=True)
class Check:
    """One verdict: ``status`` is ``"ok"``, ``"WARN"`` or ``"FAIL"``; ``fix`` says what to do."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        tail = f"  -> {self.fix}" if self.fix and self.status != "ok" else ""
        return f"[{self.status:>4}] {self.name:<18} {self.detail}{tail}"


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """``{normalized name: version}`` of every ``name==version`` line of a pip-compile lock."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        if m:
            pins[_norm(m[1])] = m[2]
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_mismatches(pins: dict[str, str]) -> list[str]:
    """``"name: installed X, lock Y"`` for every pinned package whose installed version differs
    (a local label such as torch's ``+cpu`` is ignored) or that is missing."""
    out = []
    for name, want in sorted(pins.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            out.append(f"{name}: missing, lock {want}")
            continue
        if have.split("+")[0] != want.split("+")[0]:
            out.append(f"{name}: installed {have}, lock {want}")
    return out


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    return set(m[1].split()) if m else set()


def _timed(name: str, fn: Callable[[], tuple[str, str]], fix: str) -> Check:
    t = time.perf_counter()
    try:
        status, detail = fn()
    except Exception as e:  # a smoke test's failure is its verdict
        status, detail = "FAIL", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return Check(name, status, f"{detail} ({time.perf_counter() - t:.1f} s)", fix)


def _python() -> Check:
    v = sys.version_info
    ok = v[:2] == (3, 11)
    return Check("python", "ok" if ok else "WARN", f"{platform.python_version()} at {sys.executable}",
                 "the lock and the lessons are made with Python 3.11: make PYTHON=python3.11 ...")  # fmt: skip


def _packages() -> Check:
    if not LOCK.is_file():
        versions = ", ".join(f"{n} {_version(n)}" for n in ("torch", "numpy", "llama-cpp-python", "bitsandbytes"))
        return Check("packages", "WARN", f"no requirements.lock beside qlab (installed as a library): {versions}",
                     "for the course's exact environment use a checkout and `make install`")  # fmt: skip
    pins = read_lock()
    bad = lock_mismatches(pins)
    if not bad:
        return Check("packages", "ok", f"all {len(pins)} pins of requirements.lock installed")
    shown = "; ".join(bad[:4]) + (f"; and {len(bad) - 4} more" if len(bad) > 4 else "")
    return Check("packages", "FAIL", f"{len(bad)} of {len(pins)} differ from the lock: {shown}",
                 "`make clean install` rebuilds .venv from requirements.lock")  # fmt: skip


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def _cpu() -> Check:
    flags = cpu_flags()
    have = [f for f in CPU_FLAGS if f in flags]
    machine = platform.machine()
    if machine in ("x86_64", "AMD64") and "avx2" not in flags:
        return Check("cpu", "FAIL", f"{machine}, no AVX2 ({' '.join(have) or 'no flags read'})",
                     "the default llama.cpp build needs AVX2: make install LLAMA_CMAKE_ARGS=-DGGML_NATIVE=ON")  # fmt: skip
    return Check("cpu", "ok", f"{machine}: {' '.join(have) or 'no /proc/cpuinfo flags'}")


def _llama_build() -> Check:
    stamp = Path(sys.prefix) / ".qlab-llama-build"
    if not stamp.is_file():
        return Check("llama.cpp build", "WARN", "not built by `make install` (flags unknown)",
                     "a llama-cpp-python wheel built elsewhere may not run on this CPU: `make install`")  # fmt: skip
    text = stamp.read_text().strip()
    native = "GGML_NATIVE=ON" in text or "GGML_NATIVE=OFF" not in text
    return Check("llama.cpp build", "WARN" if native else "ok",
                 ("native (this CPU only): " if native else "portable x86-64/AVX2: ") + text,
                 "a native build crashes on other CPUs; the default flags are portable (README)")  # fmt: skip


def _imports() -> Check:
    import importlib

    mods = ("torch", "llama_cpp", "onnxruntime", "onnx", "bitsandbytes", "openvino", "nncf", "transformers", "playwright")
    missing = []
    for mod in mods:
        try:
            importlib.import_module(mod)
        except Exception as e:  # an ImportError or a broken native library
            missing.append(f"{mod} ({type(e).__name__})")
    if missing:
        return Check("runtimes import", "FAIL", "cannot import " + ", ".join(missing), "`make install`")
    return Check("runtimes import", "ok", ", ".join(mods))


def _llamacpp() -> tuple[str, str]:
    import numpy as np

    from .backends.llamacpp.isolate import call, stream
    from .models.smollm2 import smollm2_gguf

    info = call("system_info")
    text = "Quantization maps real numbers to a small set of levels. " * 4
    _ids, logits = stream("text_windows", str(smollm2_gguf()), text, 8, 1, threads=1)  # one child: load, tokenize, eval
    if not np.isfinite(logits).all():
        return "FAIL", "non-finite logits"
    # "CPU : SSE3 = 1 | AVX2 = 1 | ...": the features this build uses
    feats = [f.split("=")[0].split(":")[-1].strip() for f in info["system_info"].split("|") if "= 1" in f]
    return "ok", f"llama-cpp-python {info['version']} evaluated 8 tokens of SmolLM2 ({' '.join(feats[:8])})"


def _onnxruntime() -> tuple[str, str]:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "doctor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [onnx.numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((2, 16)).astype(np.float32)
    err = float(np.abs(sess.run(None, {"x": x})[0] - x @ w).max())
    return ("ok" if err < 1e-4 else "FAIL"), f"onnxruntime {ort.__version__} MatMul session, max error {err:.1e}"


@dataclass
class _Holder:  # the smallest "loaded model" that bitsandbytes.simulate takes
    model: object


def _bitsandbytes() -> tuple[str, str]:
    import bitsandbytes
    import torch

    from .backends.bitsandbytes import cpu_bf16_kernel, quantized_linear, simulate

    torch.manual_seed(0)
    lin = torch.nn.Linear(128, 32)
    q = quantized_linear(lin, "nf4", "cpu")
    x = torch.randn(4, 128)
    with torch.inference_mode():
        y = q(x)
        y_sim = simulate(_Holder(torch.nn.Sequential(lin)), "nf4").model(x)
    err = float((y - y_sim).abs().max() / y.abs().max())
    kernel = "bf16 (AVX512-BF16)" if cpu_bf16_kernel() else "float32"
    ok = err < 2**-6  # one bfloat16 step at most on the bf16 kernel, ~1e-7 on the float32 one
    return ("ok" if ok else "FAIL"), (f"bitsandbytes {bitsandbytes.__version__} Linear4bit nf4 on CPU, {kernel} kernel, "
                                      f"vs qlab's simulation {err:.1e} relative")  # fmt: skip


def _torch_ao() -> tuple[str, str]:
    import torch

    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(64, 16))
    with warnings.catch_warnings():  # torch 2.13 announces the quantized-tensor API's deprecation
        warnings.simplefilter("ignore", UserWarning)
        q = torch.ao.quantization.quantize_dynamic(lin, {torch.nn.Linear}, dtype=torch.qint8)
    x = torch.randn(4, 64)
    with torch.inference_mode():
        err = float((q(x) - lin(x)).abs().max() / lin(x).abs().max())
    return ("ok" if err < 0.05 else "FAIL"), f"torch {torch.__version__} dynamic int8 Linear, {err:.1e} relative error"


def _openvino() -> tuple[str, str]:
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    from .backends.openvino import compile_ir, compress_weights_ir, simulate

    rng = np.random.default_rng(0)
    w = rng.standard_normal((128, 32)).astype(np.float32)
    x = rng.standard_normal((4, 128)).astype(np.float32)
    p = ops.parameter([-1, 128], np.float32, name="x")
    q = compress_weights_ir(ov.Model([ops.matmul(p, ops.constant(w), False, False)], [p]), "int4_sym", 32,
                            all_layers=True)
    y = compile_ir(q, threads=1, dynamic_quantization=0)(x)[0]
    y_sim = x @ simulate(w, "int4_sym", 32)
    err = float(np.abs(y - y_sim).max() / np.abs(y_sim).max())
    return ("ok" if err < 2e-3 else "FAIL"), (f"openvino {ov.get_version().split('-')[0]} CPU plugin, NNCF int4_sym "
                                              f"MatMul vs qlab's simulation {err:.1e} relative")  # fmt: skip


def _browser() -> tuple[str, str]:
    import os

    exe = next((shutil.which(e) for e in (os.environ.get("QLAB_CHROMIUM", ""), "chromium", "chromium-browser")
                if e and shutil.which(e)), None)  # fmt: skip
    if exe is None:
        return "WARN", "no chromium: the browser test (tests/browser) will skip"
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--no-first-run", "--dump-dom", "data:text/html,<p>qlab</p>"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    ok = "<p>qlab</p>" in out.stdout
    return ("ok" if ok else "FAIL"), f"{exe} rendered a page headless" if ok else f"{exe} exit {out.returncode}"


def run(smoke: bool = True) -> Iterator[Check]:
    """Every check in order (the smoke tests only with ``smoke``)."""
    yield _python()
    yield _packages()
    yield _cpu()
    yield _llama_build()
    yield _imports()
    if not smoke:
        return
    yield _timed("llama.cpp", _llamacpp, f"rebuild llama-cpp-python with portable flags: `make clean install`; {README}")
    yield _timed("onnxruntime", _onnxruntime, "`make install`")
    yield _timed("bitsandbytes", _bitsandbytes, f"reinstall the locked bitsandbytes: `make clean install`; {README}")
    yield _timed("torch.ao int8", _torch_ao, "`make install` (torch 2.13.0 CPU)")
    yield _timed("openvino", _openvino, "`make install` (openvino and nncf from requirements.lock)")
    yield _timed("browser", _browser, "as root: apt-get install chromium (scripts/install_browser.sh)")


def main(smoke: bool = True) -> int:
    """Print the checks; 1 if any failed, else 0."""
    failed = 0
    for check in run(smoke):
        print(check.line(), flush=True)
        failed += check.status == "FAIL"
    print(f"qlab doctor: {'all good' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0
