"""The references the GGML tests compare against, loaded once for every test module.

* llama.cpp's own bytes: ``tests/data/ggml/inputs.npz`` (9 float32 matrices) and
  ``<type>.npz`` (what ``llama_model_quantize`` wrote for each, without an importance matrix);
* gguf-py (``gguf.quants``): ``dequantize`` for every type, ``quantize`` where it has one;
* llama.cpp's library itself (``ggml_quantize_chunk`` from llama-cpp-python's bundled libggml,
  through ctypes) when that package is installed.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

import qlab.formats as F

DATA = Path(__file__).resolve().parents[2] / "data" / "ggml"
INPUTS: dict[str, np.ndarray] = dict(np.load(DATA / "inputs.npz"))
LEGACY = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0"]
TERNARY = ["tq1_0", "tq2_0"]
#: every GGML type qlab implements, in llama.cpp's type-id order
TYPES = [*LEGACY, "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs", *TERNARY]
#: the types gguf-py can also quantize (the others raise NotImplementedError there)
GGUF_PY_QUANTIZES = LEGACY + TERNARY


def qtype(t: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[t.upper()]


@cache
def oracle(t: str) -> dict[str, np.ndarray]:
    """llama.cpp's bytes for every matrix of ``INPUTS``, as uint8 arrays."""
    return dict(np.load(DATA / f"{t}.npz"))


def ours(t: str, x) -> bytes:
    """qlab's bytes, fp16 scale overflow stored as inf as llama.cpp does (``overflow="inf"``)."""
    return F.get(t).encode(x, overflow="inf").to_bytes()


def gguf_bytes(t: str, x: np.ndarray) -> bytes:
    """gguf-py's ``quantize`` (legacy and ternary types only)."""
    with np.errstate(all="ignore"):  # gguf-py warns where 1/d overflows (its casts then give 0)
        return quantize(np.ascontiguousarray(x, dtype=np.float32), qtype(t)).tobytes()


def gguf_decode(t: str, raw) -> np.ndarray:
    """gguf-py's ``dequantize`` of block bytes, flattened."""
    buf = np.frombuffer(raw, np.uint8) if isinstance(raw, bytes) else np.asarray(raw, np.uint8)
    with np.errstate(all="ignore"):  # an fp16-inf scale times code 0 is NaN
        return dequantize(buf.ravel(), qtype(t)).ravel()


def assert_decode_matches_gguf(t: str, raw, shape: tuple[int, ...]) -> None:
    """``decode(from_bytes(raw, shape))`` is float32 of ``shape`` and equals gguf-py's
    ``dequantize`` bit for bit (signed zeros, infinities and NaN payloads included)."""
    fmt = F.get(t)
    with np.errstate(all="ignore"):
        y = fmt.decode(fmt.from_bytes(raw, shape))
    assert y.dtype == np.float32 and y.shape == tuple(shape)
    assert np.array_equal(y.ravel().view(np.uint32), gguf_decode(t, raw).view(np.uint32))


def llama_cpp_bytes(t: str, x: np.ndarray) -> bytes:
    """What llama.cpp's library writes for the rows of ``x`` (float32, 2-D): ``ggml_quantize_chunk``
    of the libggml bundled with llama-cpp-python, run in a child process (a native crash fails this
    test, not the test run); skips the test when llama-cpp-python is not installed."""
    pytest.importorskip("llama_cpp")
    from qlab.backends.llamacpp.isolate import call

    fmt = F.get(t)
    x = np.ascontiguousarray(x, dtype=np.float32)
    return call("quantize_chunk", fmt.ggml_type, x, x.size // fmt.block_size * fmt.type_size)


def llama_cpp_cases(types, cases, needs_imatrix=()) -> dict[str, np.ndarray]:
    """``{"<type>/<case>": llama.cpp's bytes}`` for every ``(x, imatrix)`` case of ``cases`` and
    every type, in one call of the child process (``ggml_quantize_chunk`` per job); a type of
    ``needs_imatrix`` is not asked for a case without an importance vector (llama.cpp aborts)."""
    pytest.importorskip("llama_cpp")
    from qlab.backends.llamacpp.isolate import call

    keys, jobs = [], []
    for name, (x, w) in cases.items():
        for t in types:
            if w is None and t in needs_imatrix:
                continue
            f = F.get(t)
            keys.append(f"{t}/{name}")
            jobs.append((f.ggml_type, x, x.size // f.block_size * f.type_size, w))
    return {k: np.frombuffer(b, np.uint8) for k, b in zip(keys, call("quantize_chunks", jobs), strict=True)}


def adversarial_inputs(seed: int, n: int, tiny: float, zero_row: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Matrices (8 or 4 rows of ``n``) that reach the rare branches of GGML's searches -- all-zero
    and near-zero blocks and sub-blocks (``tiny`` in one 32-block; ``zero_row``: a whole zero row),
    constants (max == min), exact ties (sort order), one spike, one sign, huge and tiny magnitudes,
    sparse rows, heavy tails -- and importance vectors from flat to 1e12 apart."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((8, n)).astype(np.float32)
    holes = base.copy()
    holes[:, 32:64] = 0  # one zero 32-block in the first super-block
    holes[1, 256:512] = 0  # a whole zero super-block
    holes[2, ::3] = 0
    holes[3, 16:32] = 1e-9
    holes[4, 64:96] = tiny
    if zero_row:
        holes[5, :] = 0
    ties = np.round(base * 2).astype(np.float32) / 2
    const = np.full((4, n), 0.37, np.float32)
    const[1] = -1.0
    const[2, ::2] = 1.0
    const[2, 1::2] = -1.0
    spike = (base * np.float32(1e-3)).astype(np.float32)
    spike[:, 100] = 50
    spike[3, 300] = -80
    onesign = np.abs(base)
    onesign[4:] *= -1
    scaled = np.concatenate([base[:4] * np.float32(1e12), base[4:] * np.float32(1e-12)]).astype(np.float32)
    sparse = np.where(rng.random((8, n)) < 0.03, base, 0).astype(np.float32)
    heavy = rng.standard_t(1.5, (8, n)).astype(np.float32)
    weights = {
        "lognormal": np.exp(rng.normal(0, 2, n)).astype(np.float32),
        "extreme": np.where(rng.random(n) < 0.1, 1e6, 1e-6).astype(np.float32),
        "ones": np.ones(n, np.float32),
    }
    xs = {"holes": holes, "ties": ties, "const": const, "spike": spike, "onesign": onesign, "scaled": scaled,
          "sparse": sparse, "heavy": heavy}
    return xs, weights
