"""Evaluate a GGUF file inside llama.cpp (llama-cpp-python): tokens, logits, perplexity, quantize.

The perplexity protocols are those of :func:`qlab.eval.perplexity` (:mod:`qlab.core.protocols`,
the same window construction and scored positions): ``"full-window"`` (default; no BOS, every
token after the first of each window scored, comparable with qlab's figures) or
``"llama-perplexity"`` (what llama.cpp's ``llama-perplexity`` tool computes: BOS in place of each
chunk's first token when the vocabulary adds BOS, the second half of each chunk scored). The text
is tokenized by llama.cpp's own tokenizer (read from the GGUF); each window is evaluated from an
empty KV cache.

llama.cpp runs with its defaults otherwise (F16 KV cache, all CPU cores). Extra keyword
arguments are passed to ``llama_cpp.Llama`` (e.g. ``type_k=0, type_v=0`` for an F32 KV cache).

Every call runs llama.cpp in a child process (:mod:`.isolate`): a native crash raises
:class:`~qlab.backends.llamacpp.isolate.LlamaCppCrash` here instead of killing the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...core.klreport import KLReport
from ...core.lm import report_logits
from ...core.protocols import Protocol
from ...core.protocols import protocol as make_protocol
from .isolate import call, stream
from .recipe import FTYPES

__all__ = ["compare", "kl_report", "llama_quantize", "perplexity", "tokenize", "window_logits"]


def _gguf(path: str | Path, arg: str = "path") -> str:
    """``path`` as a string, after checking that it is a GGUF file (before a child is started)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{arg}={str(path)!r}: no such GGUF file")
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ValueError(f"{arg}={str(path)!r} is not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    return str(p)


def tokenize(path: str | Path, text: str, add_bos: bool = False) -> list[int]:
    """llama.cpp's tokens for ``text`` with the tokenizer of the GGUF ``path``; no BOS by default.
    Special-token text (``<|im_start|>``) is tokenized as plain text, as transformers does."""
    return call("tokenize", _gguf(path), [text], add_bos)[0]


def _windows(path: str, text: str, proto: Protocol) -> np.ndarray:
    """The protocol's token windows ``(windows, window)`` built from llama.cpp's tokens of ``text``."""
    bos, toks = call("text_tokens", path, text, proto.min_text_tokens(None))
    return proto.windows_of(toks, bos)


def _run_windows(path: str, ids: np.ndarray, window: int, **kwargs: Any) -> Iterator[np.ndarray]:
    """For each row of ``ids`` (from an empty KV cache): its logits ``(window, vocab)`` float32,
    or with ``nll_only=True, first=...`` the NLL of the scored tokens (see ``_child.logits``)."""
    return stream("logits", path, np.ascontiguousarray(ids, dtype=np.int64), window, **kwargs)


def window_logits(
    path: str | Path, text: str, window: int = 512, windows: int = 16, protocol: str = "full-window", **llama_kwargs: Any
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(tokens int64 (window,), logits float32 (window, vocab))`` for each window, from llama.cpp."""
    proto = make_protocol(protocol, window, windows)
    p = _gguf(path)
    ids = _windows(p, text, proto)
    yield from zip(ids, _run_windows(p, ids, window, **llama_kwargs), strict=True)


def perplexity(
    path: str | Path, text: str, window: int = 512, windows: int = 16, protocol: str = "full-window", **llama_kwargs: Any
) -> float:
    """exp(mean NLL) of the scored tokens under ``protocol``, computed by llama.cpp (the child
    computes each window's NLL in float64 and sends back only that)."""
    proto = make_protocol(protocol, window, windows)
    p = _gguf(path)
    ids = _windows(p, text, proto)
    nll = np.concatenate(list(_run_windows(p, ids, window, first=proto.first, nll_only=True, **llama_kwargs)))
    return float(np.exp(nll.mean()))


def kl_report(path: str | Path, ref: Any, **llama_kwargs: Any) -> KLReport:
    """llama.cpp's run of a GGUF file against a float reference run of qlab
    (:func:`qlab.eval.reference`, whose protocol it follows), on the reference's very tokens:
    every statistic ``llama-perplexity --kl-divergence`` prints (:class:`~qlab.core.klreport.KLReport`)."""
    import torch

    logits = _run_windows(_gguf(path), ref.ids.numpy(), ref.window, **llama_kwargs)
    return report_logits(ref, (torch.from_numpy(lg) for lg in logits))


def compare(path: str | Path, ref: Any, **llama_kwargs: Any) -> dict[str, float]:
    """The compact figures of :func:`kl_report` -- perplexity, KL(ref || llama.cpp), top-1
    agreement: the keys of :func:`qlab.eval.compare`."""
    return kl_report(path, ref, **llama_kwargs).metrics()


def llama_quantize(
    src: str | Path, dst: str | Path, ftype: str = "q4_k_m", *, pure: bool = False, nthread: int = 0
) -> Path:
    """Quantize the GGUF ``src`` with llama.cpp's own quantizer (``llama_model_quantize``, what
    ``llama-quantize`` runs) into ``dst``: the reference that qlab's export is compared with.

    ``ftype`` is a preset name (``"q4_k_m"``, ``"q8_0"`` ...); ``pure=True`` writes every tensor in
    the preset's base type (llama-quantize ``--pure``: no Q6_K output, no mix, no fallback).
    """
    key = ftype.lower()
    if key not in FTYPES:
        raise ValueError(f"unknown llama.cpp ftype {ftype!r}; known: {', '.join(FTYPES)}")
    rc, log = call("model_quantize", _gguf(src, "src"), str(dst), FTYPES[key], pure=pure, nthread=nthread)
    if rc != 0:
        tail = "\n".join(log[-5:])
        raise RuntimeError(f"llama_model_quantize({src}, {dst}, {ftype}) failed with code {rc}:\n{tail}")
    return Path(dst)
