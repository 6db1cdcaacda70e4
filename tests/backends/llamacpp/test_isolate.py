"""llama.cpp runs in a child process: a native crash becomes a Python error, the caller lives on.

The crash tests kill the real child (the process that loaded llama-cpp-python) with a real signal,
as a segfaulting kernel would; the error tests feed llama.cpp real broken files.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from qlab.backends.llamacpp import perplexity, tokenize
from qlab.backends.llamacpp.isolate import README_SECTION, LlamaCppCrash, call, stream

pytestmark = pytest.mark.usefixtures("llama_cpp")


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGILL])
def test_a_crash_in_the_child_is_a_clear_error(sig: signal.Signals, smollm2_gguf: Path) -> None:
    parent = os.getpid()
    with pytest.raises(LlamaCppCrash) as e:
        call("raise_signal", str(smollm2_gguf), int(sig))
    err = e.value
    assert err.signal == sig.name and err.returncode == -int(sig) and err.path == str(smollm2_gguf)
    msg = str(err)
    for part in ("llama.cpp", sig.name, str(smollm2_gguf), README_SECTION, "qlab doctor", "unaffected"):
        assert part in msg, (part, msg)
    assert isinstance(err, RuntimeError) and os.getpid() == parent  # still here, still us
    assert call("system_info")["version"]  # and the next call works


def test_python_errors_of_the_child_keep_their_type(smollm2_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown llama.cpp child op 'nope'"):
        call("nope")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(smollm2_gguf.read_bytes()[: 3 << 20])  # header and vocabulary, no tensors
    with pytest.raises(ValueError, match="truncated.gguf") as e:
        perplexity(truncated, "some text " * 200, window=16, windows=1)
    assert "child process" in "".join(getattr(e.value, "__notes__", []))


def test_bad_paths_fail_before_a_child_starts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such GGUF file"):
        tokenize(tmp_path / "missing.gguf", "hi")
    not_gguf = tmp_path / "model.onnx"
    not_gguf.write_bytes(b"\x08\x07onnx")
    with pytest.raises(ValueError, match="not a GGUF file"):
        perplexity(not_gguf, "hi")


def test_stream_yields_real_logits_and_stops_early(smollm2_gguf: Path) -> None:
    ids = np.array([tokenize(smollm2_gguf, "The quick brown fox jumps over the lazy dog")[:8]] * 3)
    gen = stream("logits", str(smollm2_gguf), ids, 8, threads=1)
    first = next(gen)
    assert first.shape == (8, 49152) and np.isfinite(first).all()
    gen.close()  # the child is killed, not left running
    again = list(stream("logits", str(smollm2_gguf), ids[:1], 8, threads=1))
    np.testing.assert_array_equal(again[0], first)  # same window from an empty cache: same logits
