"""Evaluate a GGUF file inside llama.cpp (llama-cpp-python): tokens, logits, perplexity, quantize.

The perplexity protocol is the one of :func:`qlab.eval.perplexity`: tokenize the text without
BOS (with llama.cpp's own tokenizer, read from the GGUF), take the first ``windows * window``
tokens, split them into non-overlapping windows, evaluate each window from an empty KV cache and
score every token after the first one; return ``exp(mean NLL)``. (llama.cpp's ``llama-perplexity``
tool scores only the second half of each window; here every position is scored so that the
number is comparable with qlab's.)

llama.cpp runs with its defaults otherwise (F16 KV cache, all CPU cores). Extra keyword
arguments are passed to ``llama_cpp.Llama`` (e.g. ``type_k=0, type_v=0`` for an F32 KV cache).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .recipe import FTYPES

__all__ = ["compare", "llama_quantize", "load", "perplexity", "tokenize", "window_logits"]


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "qlab.backends.llamacpp needs llama-cpp-python (pip install llama-cpp-python)"
        ) from e
    return llama_cpp


def load(path: str | Path, window: int = 512, **llama_kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` on ``path`` set up to return the logits of every position of a
    ``window``-token batch (``logits_all``, ``n_ctx = n_batch = n_ubatch = window``)."""
    llama_cpp = _llama_cpp()
    threads = os.cpu_count() or 1
    kw: dict[str, Any] = dict(
        n_ctx=window, n_batch=window, n_ubatch=window, logits_all=True,
        n_threads=threads, n_threads_batch=threads, verbose=False,
    )  # fmt: skip
    kw.update(llama_kwargs)
    return llama_cpp.Llama(model_path=str(path), **kw)


def tokenize(llm: Any, text: str, add_bos: bool = False) -> list[int]:
    """llama.cpp's tokens for ``text`` (``llm`` is a ``Llama`` or a GGUF path); no BOS by default.
    Special-token text (``<|im_start|>``) is tokenized as plain text, as transformers does."""
    if isinstance(llm, str | Path):
        with contextlib.redirect_stderr(io.StringIO()):  # a vocab-only context warns about n_ctx
            llm = _llama_cpp().Llama(model_path=str(llm), vocab_only=True, verbose=False)
    return list(llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False))


def _first_tokens(llm: Any, text: str, need: int) -> np.ndarray:
    """The first ``need`` tokens of ``text`` without tokenizing all of it (WikiText-2 is 1.3 MB).

    BPE works inside pre-tokenizer chunks (words, runs of spaces, digits), so the tokens of a
    prefix equal those of the full text except for the last chunk or two; keep a margin of 64
    tokens past ``need`` and double the prefix until it holds.
    """
    chars = 8 * need + 1024
    while True:
        toks = tokenize(llm, text[:chars])
        if chars >= len(text) or len(toks) >= need + 64:
            break
        chars *= 2
    if len(toks) < need:
        raise ValueError(f"text has {len(toks)} tokens, need {need}")
    return np.asarray(toks[:need], dtype=np.int64)


def _nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of ``targets`` under each row of ``logits`` (float64 log-sum-exp)."""
    x = logits.astype(np.float64)
    mx = x.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(x - mx).sum(axis=1))
    return lse - x[np.arange(len(targets)), targets]


def _run_windows(llm: Any, ids: np.ndarray) -> Iterator[np.ndarray]:
    """Logits float32 ``(window, vocab)`` of each row of ``ids``, each from an empty KV cache."""
    for row in ids:
        llm.reset()  # n_tokens = 0: eval() clears the KV cache from position 0
        llm.eval([int(t) for t in row])
        yield np.array(llm.scores[: len(row)], dtype=np.float32)


@contextlib.contextmanager
def _opened(path: str | Path | Any, window: int, **llama_kwargs: Any) -> Iterator[Any]:
    """A ``Llama`` for ``path`` (closed afterwards), or ``path`` itself if it already is one."""
    if hasattr(path, "eval"):
        yield path
        return
    llm = load(path, window, **llama_kwargs)
    try:
        yield llm
    finally:
        llm.close()


def window_logits(
    path: str | Path | Any, text: str, window: int = 512, windows: int = 16, **llama_kwargs: Any
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(tokens int64 (window,), logits float32 (window, vocab))`` for each window, from
    llama.cpp. ``path`` may also be a ``Llama`` made by :func:`load` with the same ``window``."""
    if window < 2 or windows < 1:
        raise ValueError(f"need window >= 2 and windows >= 1, got window={window}, windows={windows}")
    with _opened(path, window, **llama_kwargs) as llm:
        ids = _first_tokens(llm, text, window * windows).reshape(windows, window)
        yield from zip(ids, _run_windows(llm, ids), strict=True)


def perplexity(
    path: str | Path, text: str, window: int = 512, windows: int = 16, **llama_kwargs: Any
) -> float:
    """exp(mean NLL) of every token after the first of each window, computed by llama.cpp."""
    total, count = 0.0, 0
    for tokens, logits in window_logits(path, text, window, windows, **llama_kwargs):
        nll = _nll(logits[:-1], tokens[1:])
        total += float(nll.sum())
        count += nll.size
    return float(np.exp(total / count))


def compare(path: str | Path, ref: Any, **llama_kwargs: Any) -> dict[str, float]:
    """llama.cpp's figures for a GGUF file against a float reference run of qlab
    (:func:`qlab.eval.reference`): perplexity on the reference's very tokens, KL(ref || llama.cpp)
    and top-1 agreement -- the keys of :func:`qlab.eval.compare`, as ``llama-perplexity
    --kl-divergence`` reports them."""
    import torch

    from ...eval.kl import summarize

    ids = ref.ids.numpy()
    kls, sames, nlls = [], [], []
    with _opened(path, ref.window, **llama_kwargs) as llm:
        for w, logits in enumerate(_run_windows(llm, ids)):
            lq = torch.log_softmax(torch.from_numpy(logits[:-1]), dim=-1)
            lp = ref.logprobs[w].float()
            kls.append((lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0))
            sames.append(lp.argmax(-1) == lq.argmax(-1))
            nlls.append(-lq.gather(1, ref.ids[w, 1:, None])[:, 0])
    ppl = float(torch.stack(nlls).double().mean().exp())
    out = {"perplexity": ppl, "reference_perplexity": ref.perplexity, "delta_perplexity": ppl - ref.perplexity}
    out.update(summarize(torch.stack(kls), torch.stack(sames)))
    return out


def llama_quantize(
    src: str | Path, dst: str | Path, ftype: str = "q4_k_m", *, pure: bool = False, nthread: int = 0
) -> Path:
    """Quantize the GGUF ``src`` with llama.cpp's own quantizer (``llama_model_quantize``, what
    ``llama-quantize`` runs) into ``dst``: the reference that qlab's export is compared with.

    ``ftype`` is a preset name (``"q4_k_m"``, ``"q8_0"`` ...); ``pure=True`` writes every tensor in
    the preset's base type (llama-quantize ``--pure``: no Q6_K output, no mix, no fallback).
    """
    llama_cpp = _llama_cpp()
    key = ftype.lower()
    if key not in FTYPES:
        raise ValueError(f"unknown llama.cpp ftype {ftype!r}; known: {', '.join(FTYPES)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[key]
    params.pure = pure
    params.nthread = nthread
    log = io.StringIO()  # llama-cpp-python routes llama.cpp's log (a line per tensor) to sys.stderr
    with contextlib.redirect_stderr(log):
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        tail = "\n".join(log.getvalue().splitlines()[-5:])
        raise RuntimeError(f"llama_model_quantize({src}, {dst}, {ftype}) failed with code {rc}:\n{tail}")
    return Path(dst)
