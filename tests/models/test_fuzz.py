"""Property test of qlab.models (issue 11, "the rule from now on"): ``load`` of random names, paths
and file contents gives a model or a clear ValueError/TypeError/FileNotFoundError -- never a
struct.error, OverflowError or a crash deep in a parser."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlab
from qlab.models.zoo import ZOO

CLEAR = (ValueError, TypeError, FileNotFoundError)


@settings(max_examples=40, deadline=None)
@given(name=st.one_of(st.sampled_from(["", "smollm2", "SmolLM2-135M", "minilm", "digits", "gpt2", "../etc", "/",
                                       "nonexistent.gguf", "x" * 300]),
                      st.integers(), st.none(), st.floats(), st.lists(st.integers(), max_size=2)))  # fmt: skip
def test_load_names(name):
    if isinstance(name, str) and name in ZOO:
        return
    try:
        qlab.models.load(name, progress=False)
    except CLEAR:
        return
    raise AssertionError(f"load({name!r}) did not refuse an unknown name")


def _gguf_header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["random", "header", "empty", "text", "truncated_kv"]),
       n_tensors=st.sampled_from([0, 1, 2**31, 2**63 - 1]), n_kv=st.sampled_from([0, 1, 7, 2**40, 2**63 - 1]),
       version=st.sampled_from([1, 2, 3, 99]), seed=st.integers(0, 2**16), size=st.integers(0, 2048))  # fmt: skip
def test_load_crafted_gguf_files(tmp_path_factory, kind, n_tensors, n_kv, version, seed, size):
    d: Path = tmp_path_factory.mktemp("gguf")
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    data = {
        "random": body,
        "header": _gguf_header(n_tensors, n_kv, version) + body,
        "empty": b"",
        "text": b"not a gguf file\n" * (size // 16 + 1),
        # one key: a string whose declared length runs past the end of the file
        "truncated_kv": _gguf_header(0, 1, version) + struct.pack("<Q", 4) + b"name" + struct.pack("<I", 8)
        + struct.pack("<Q", 2**40) + body[:8],
    }[kind]
    p = d / "model.gguf"
    p.write_bytes(data)
    try:
        qlab.models.load(p, progress=False)
    except CLEAR:
        return
    raise AssertionError(f"a crafted {kind} GGUF loaded as a model")
