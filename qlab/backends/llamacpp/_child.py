"""The child process that runs llama.cpp for :mod:`qlab.backends.llamacpp.isolate`.

Started as ``python -P _child.py`` (a script, not a qlab import: the child loads numpy and
llama_cpp only, so it starts in a fraction of a second). Protocol, all pickles:

* stdin: one request ``(op, args, kwargs)``; ``op`` names a function of :data:`OPS`;
* stdout: frames ``("item", value)`` for each value a generator op yields, then one final
  ``("done", value)`` or ``("error", exception, traceback_text)``.

Native code may print to fd 1 (ggml's ``printf``), which would corrupt the frames: the protocol
keeps a private duplicate of the original stdout and fd 1 is pointed at stderr. If llama.cpp
crashes (SIGSEGV, SIGABRT ...), the process dies without a final frame and the parent turns the
signal into a Python error; nothing here tries to survive a crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import numpy as np


def _llama_cpp() -> Any:
    import llama_cpp

    return llama_cpp


def _load(path: str, window: int, threads: int | None, **llama_kwargs: Any) -> Any:
    """A ``Llama`` that returns the logits of every position of a ``window``-token batch."""
    n = threads or os.cpu_count() or 1
    kw: dict[str, Any] = dict(
        n_ctx=window, n_batch=window, n_ubatch=window, logits_all=True,
        n_threads=n, n_threads_batch=n, verbose=False,
    )  # fmt: skip
    kw.update(llama_kwargs)
    return _llama_cpp().Llama(model_path=path, **kw)


def tokenize(path: str, texts: list[str], add_bos: bool = False) -> list[list[int]]:
    """llama.cpp's tokens of each text (vocab-only load; special-token text stays plain text)."""
    llm = _llama_cpp().Llama(model_path=path, vocab_only=True, verbose=False)
    try:
        return [list(llm.tokenize(t.encode("utf-8"), add_bos=add_bos, special=False)) for t in texts]
    finally:
        llm.close()


def logits(path: str, ids: np.ndarray, window: int, threads: int | None = None, first: int = 0,
           nll_only: bool = False, **llama_kwargs: Any) -> Iterator[np.ndarray]:
    """For each row of ``ids``, evaluated from an empty KV cache: its float32 ``(len(row), vocab)``
    logits, or with ``nll_only`` the NLL of tokens ``first + 1`` .. ``len(row) - 1`` under logits
    rows ``first`` .. ``len(row) - 2`` (float64: 4 KB to send back instead of the 100 MB of a
    512 x 49,152 logits window; ``first`` is the protocol's first scored row)."""
    llm = _load(path, window, threads, **llama_kwargs)
    try:
        for row, out in zip(np.asarray(ids), _eval_rows(llm, np.asarray(ids)), strict=True):
            yield nll(out[first:-1], row[first + 1 :]) if nll_only else out
    finally:
        llm.close()


def _eval_rows(llm: Any, ids: np.ndarray) -> Iterator[np.ndarray]:
    for row in ids:
        llm.reset()  # n_tokens = 0: eval() clears the KV cache from position 0
        llm.eval([int(t) for t in row])
        yield np.array(llm.scores[: len(row)], dtype=np.float32)


def _prefix_tokens(llm: Any, text: str, need: int) -> np.ndarray:
    """The first ``<= need`` tokens of ``text`` (no BOS) without tokenizing all of it (WikiText-2
    is 1.3 MB). BPE works inside pre-tokenizer chunks (words, runs of spaces, digits), so the
    tokens of a prefix equal those of the full text except for the last chunk or two; keep a
    margin of 64 tokens past ``need`` and double the prefix until it holds."""
    chars = 8 * need + 1024
    while True:
        toks = llm.tokenize(text[:chars].encode("utf-8"), add_bos=False, special=False)
        if chars >= len(text) or len(toks) >= need + 64:
            return np.asarray(toks[:need], dtype=np.int64)
        chars *= 2


def text_tokens(path: str, text: str, need: int) -> tuple[int | None, np.ndarray]:
    """``(BOS id if the vocabulary adds BOS else None, the first <= need tokens of the text
    without BOS)``, vocab-only load. BOS is detected the way llama.cpp's tokenizer adds it
    (``add_special=True`` obeys ``llama_vocab_get_add_bos``)."""
    llm = _llama_cpp().Llama(model_path=path, vocab_only=True, verbose=False)
    try:
        probe = llm.tokenize(b"a", add_bos=True, special=False)
        plain = llm.tokenize(b"a", add_bos=False, special=False)
        bos = int(probe[0]) if len(probe) == len(plain) + 1 else None
        return bos, _prefix_tokens(llm, text, need)
    finally:
        llm.close()


def text_windows(path: str, text: str, window: int, windows: int, threads: int | None = None,
                 **llama_kwargs: Any) -> Iterator[np.ndarray]:
    """One load, tokenize, evaluate (``qlab doctor``'s smoke test): yields the first
    ``window * windows`` tokens (no BOS) as ``(windows, window)``, then each window's logits."""
    llm = _load(path, window, threads, **llama_kwargs)
    try:
        ids = _prefix_tokens(llm, text, window * windows)
        if len(ids) < window * windows:
            raise ValueError(f"text has {len(ids)} tokens, need {window * windows}")
        ids = ids.reshape(windows, window)
        yield ids
        yield from _eval_rows(llm, ids)
    finally:
        llm.close()


def nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of ``targets`` under each row of ``logits`` (float64 log-sum-exp)."""
    x = logits.astype(np.float64)
    mx = x.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(x - mx).sum(axis=1))
    return lse - x[np.arange(len(targets)), targets]


def model_quantize(src: str, dst: str, ftype: int, pure: bool = False, nthread: int = 0,
                   allow_requantize: bool = False, dry_run: bool = False) -> tuple[int, list[str]]:
    """``llama_model_quantize`` (what ``llama-quantize`` runs): its return code and log lines."""
    llama_cpp = _llama_cpp()
    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: Any) -> None:
        lines.append(text.decode(errors="replace"))

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.pure = pure
    params.nthread = nthread
    params.allow_requantize = allow_requantize
    params.dry_run = dry_run
    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    return int(rc), "".join(lines).splitlines()


def quantize_chunks(jobs: list[tuple[int, np.ndarray, int, np.ndarray | None]]) -> list[bytes]:
    """``ggml_quantize_chunk`` of the libggml bundled with llama-cpp-python, for each job
    ``(ggml type, x float32 2-D, output bytes, importance vector or None)``, after
    ``ggml_quantize_init(type)`` (which builds the IQ types' grids; a no-op for the others)."""
    from pathlib import Path

    libdir = Path(_llama_cpp().__file__).parent / "lib"
    for so in sorted(libdir.glob("libggml*.so*")) + sorted(libdir.glob("libllama*.so*")):
        try:
            lib = ctypes.CDLL(str(so))
            chunk, init = lib.ggml_quantize_chunk, lib.ggml_quantize_init
        except (OSError, AttributeError):
            continue
        chunk.restype = ctypes.c_size_t
        chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 3 + [ctypes.c_void_p]
        init.argtypes = [ctypes.c_int]
        out = []
        for ggml_type, x, nbytes, imatrix in jobs:
            x = np.ascontiguousarray(x, dtype=np.float32)
            w = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
            dst = np.zeros(nbytes, np.uint8)
            init(ggml_type)
            chunk(ggml_type, x.ctypes.data, dst.ctypes.data, 0, x.shape[0], x.shape[1], None if w is None else w.ctypes.data)
            out.append(dst.tobytes())
        return out
    raise FileNotFoundError(f"no libggml with ggml_quantize_chunk under {libdir}")


def quantize_chunk(ggml_type: int, x: np.ndarray, nbytes: int, imatrix: np.ndarray | None = None) -> bytes:
    """One job of :func:`quantize_chunks`."""
    return quantize_chunks([(ggml_type, x, nbytes, imatrix)])[0]


def system_info() -> dict[str, str]:
    """llama-cpp-python's version and ``llama_print_system_info`` (the CPU features it was built for)."""
    llama_cpp = _llama_cpp()
    return {"version": llama_cpp.__version__, "system_info": llama_cpp.llama_print_system_info().decode()}


def raise_signal(path: str, signum: int) -> None:
    """Test hook: the child reads the head of ``path``, then kills itself with ``signum`` -- what a
    native crash while working on that file looks like to the parent."""
    with open(path, "rb") as f:
        f.read(4)
    os.kill(os.getpid(), signum)
    signal.pause()  # pragma: no cover


OPS = {f.__name__: f for f in (tokenize, logits, text_tokens, text_windows, model_quantize, quantize_chunk, quantize_chunks, system_info, raise_signal)}


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # native printf -> stderr; frames go to `out` only
    sys.stdout = sys.stderr

    def send(*frame: Any) -> None:
        pickle.dump(frame, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        op, args, kwargs = pickle.load(sys.stdin.buffer)
        if op not in OPS:
            raise ValueError(f"unknown llama.cpp child op {op!r}; known: {', '.join(OPS)}")
        result = OPS[op](*args, **kwargs)
        if isinstance(result, Iterator):
            for item in result:
                send("item", item)
            result = None
        send("done", result)
    except BaseException as e:  # report every Python-level failure to the parent
        tb = traceback.format_exc()
        try:
            pickle.dumps(e)
        except Exception:
            e = RuntimeError(f"{type(e).__name__}: {e}")
        with contextlib.suppress(BrokenPipeError):
            send("error", e, tb)


if __name__ == "__main__":
    main()
