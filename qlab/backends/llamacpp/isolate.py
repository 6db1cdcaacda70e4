"""Run llama.cpp in a child process, so that a native crash cannot take the caller down.

llama.cpp is C/C++: a build for the wrong CPU (``-march=native`` on one machine, run on another),
a corrupt file that slips past its checks or a bug ends in SIGSEGV/SIGABRT, which kills the
Python process that loaded it -- in a lesson, the learner's Jupyter kernel with all its state.
Every llama.cpp call of :mod:`qlab.backends.llamacpp` therefore runs in a fresh child process
(``python -P _child.py``, numpy and llama_cpp only) and talks to it with pickles over pipes:

>>> call("system_info")["version"]                                     # doctest: +SKIP
'0.3.36'
>>> for logits in stream("logits", "model.gguf", ids, 512): ...        # doctest: +SKIP

A Python exception in the child is raised again here (same type and message, with the child's
traceback as a note). A child killed by a signal raises :class:`LlamaCppCrash` naming the
runtime, the signal, the file and the README section that explains the usual fix. The cost is
one process start per call (about 0.2 s: Python, numpy and libllama); a perplexity run is one call
(the child loads the model once, tokenizes with it and evaluates every window), so the cost is small
next to the run itself; ``benchmarks/llamacpp_isolation.py`` measures it.
"""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["LlamaCppCrash", "call", "stream", "README_SECTION"]

CHILD = Path(__file__).with_name("_child.py")
README_SECTION = 'README.md, section "Troubleshooting: llama.cpp crashes"'


class LlamaCppCrash(RuntimeError):
    """llama.cpp died in its child process (a signal or an exit without an answer).

    ``signal`` is the signal's name (``"SIGSEGV"``) or ``None``; ``returncode`` the child's;
    ``path`` the file it was working on; ``log`` the last lines llama.cpp printed."""

    def __init__(self, message: str, *, op: str, path: str | None, returncode: int, log: str) -> None:
        super().__init__(message)
        self.op, self.path, self.returncode, self.log = op, path, returncode, log
        self.signal = signal.Signals(-returncode).name if returncode < 0 else None


def _path_of(args: tuple[Any, ...]) -> str | None:
    first = args[0] if args else None
    return str(first) if isinstance(first, str | Path) else None


def _crash(op: str, args: tuple[Any, ...], rc: int, log: str) -> LlamaCppCrash:
    path = _path_of(args)
    if rc < 0:
        how = f"was killed by {signal.Signals(-rc).name} (signal {-rc})"
    else:
        how = f"exited with code {rc} without an answer"
    tail = "\n".join(log.strip().splitlines()[-8:])
    msg = (
        f"llama.cpp (llama-cpp-python) {how} while running {op!r}"
        + (f" on {path}" if path else "")
        + ". This Python process is unaffected; the native runtime ran in a child process. "
        + "A crash on every file usually means llama-cpp-python was built for another CPU "
        + f"(a native build, or a wheel reused from another machine): see {README_SECTION}, "
        + "and `qlab doctor`."
        + (f"\nllama.cpp's last output:\n{tail}" if tail else "")
    )
    return LlamaCppCrash(msg, op=op, path=path, returncode=rc, log=log)


def stream(op: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Run ``op`` (a function of ``_child.OPS``) in a child process and yield what it yields.

    Closing the generator early kills the child. Raises :class:`LlamaCppCrash` when the child
    dies, or the child's own exception when ``op`` raised one."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-P", str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            try:
                pickle.dump((op, args, kwargs), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the child died at start: reported below from its exit status
            while True:
                try:
                    frame = pickle.load(proc.stdout)
                except EOFError:
                    rc = proc.wait()
                    err.seek(0)
                    raise _crash(op, args, rc, err.read().decode(errors="replace")) from None
                if frame[0] == "item":
                    yield frame[1]
                elif frame[0] == "done":
                    proc.wait()
                    return frame[1]
                else:
                    _, exc, tb = frame
                    exc.add_note(f"(raised by llama.cpp's child process)\n{tb}")
                    raise exc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def call(op: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``op`` in a child process and return its result (see :func:`stream`)."""
    gen = stream(op, *args, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
