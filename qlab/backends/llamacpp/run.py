"""Evaluate a GGUF file inside llama.cpp (llama-cpp-python): tokens, logits, perplexity, quantize.

The perplexity protocol is the one of :func:`qlab.eval.perplexity`: tokenize the text without
BOS (with llama.cpp's own tokenizer, read from the GGUF), take the first ``windows * window``
tokens, split them into non-overlapping windows, evaluate each window from an empty KV cache and
score every token after the first one; return ``exp(mean NLL)``. (llama.cpp's ``llama-perplexity``
tool scores only the second half of each window; here every position is scored so that the
number is comparable with qlab's.)

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

from .isolate import call, stream
from .recipe import FTYPES

__all__ = ["compare", "llama_quantize", "perplexity", "tokenize", "window_logits"]


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


def _run_windows(path: str, ids: np.ndarray, window: int, **llama_kwargs: Any) -> Iterator[np.ndarray]:
    """Logits float32 ``(window, vocab)`` of each row of ``ids``, each from an empty KV cache."""
    return stream("logits", path, np.ascontiguousarray(ids, dtype=np.int64), window, **llama_kwargs)


def window_logits(
    path: str | Path, text: str, window: int = 512, windows: int = 16, **llama_kwargs: Any
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(tokens int64 (window,), logits float32 (window, vocab))`` for each window, from llama.cpp."""
    if window < 2 or windows < 1:
        raise ValueError(f"need window >= 2 and windows >= 1, got window={window}, windows={windows}")
    # one child process loads the model once, tokenizes with it, then evaluates every window
    windows_out = stream("text_windows", _gguf(path), text, window, windows, **llama_kwargs)
    ids = next(windows_out)
    yield from zip(ids, windows_out, strict=True)


def perplexity(
    path: str | Path, text: str, window: int = 512, windows: int = 16, **llama_kwargs: Any
) -> float:
    """exp(mean NLL) of every token after the first of each window, computed by llama.cpp (the
    child computes each window's NLL in float64 and sends back only that)."""
    if window < 2 or windows < 1:
        raise ValueError(f"need window >= 2 and windows >= 1, got window={window}, windows={windows}")
    out = stream("text_windows", _gguf(path), text, window, windows, nll_only=True, **llama_kwargs)
    next(out)  # the token ids
    nll = np.concatenate(list(out))
    return float(np.exp(nll.mean()))


def compare(path: str | Path, ref: Any, **llama_kwargs: Any) -> dict[str, float]:
    """llama.cpp's figures for a GGUF file against a float reference run of qlab
    (:func:`qlab.eval.reference`): perplexity on the reference's very tokens, KL(ref || llama.cpp)
    and top-1 agreement -- the keys of :func:`qlab.eval.compare`, as ``llama-perplexity
    --kl-divergence`` reports them."""
    import torch

    from ...core.lm import compare_logits

    ids = ref.ids.numpy()
    logits = _run_windows(_gguf(path), ids, ref.window, **llama_kwargs)
    return compare_logits(ref, (torch.from_numpy(lg) for lg in logits))


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
