"""Perplexity of a causal LM with llama.cpp's fixed-window protocol.

Protocol (the one ``qlab.backends.llamacpp.perplexity`` runs inside llama.cpp, so the two agree
token for token):

1. tokenize ``text`` *without* BOS or any special token;
2. take the first ``windows * window`` tokens (a ValueError if the text is shorter) and split them
   into ``windows`` non-overlapping windows of ``window`` tokens;
3. run each window independently (positions restart at 0, no cache carried over) and score every
   token after the first of its window: ``windows * (window - 1)`` predictions;
4. perplexity = ``exp(mean negative log-likelihood)`` (natural log, mean in float64).

This is the classic fixed-context evaluation (no sliding stride), so values are higher than
strided evaluations of the same model; compare numbers only under the same window and count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import torch

from .text import wikitext2_test


def token_windows(m: Any, text: str | None = None, window: int = 512, windows: int = 16) -> torch.Tensor:
    """Token ids ``(windows, window)`` int64 of ``text`` (default: WikiText-2 test), no BOS."""
    if window < 2 or windows < 1:
        raise ValueError(f"need window >= 2 and windows >= 1, got window={window}, windows={windows}")
    if m.tokenizer is None:
        raise ValueError(f"{m.name} has no tokenizer: perplexity needs a causal language model")
    need = window * windows
    ids = first_tokens(m.tokenizer, wikitext2_test() if text is None else text, need)
    if len(ids) < need:
        raise ValueError(f"text has {len(ids)} tokens, window * windows = {window} * {windows} = {need} needed")
    return torch.tensor(ids, dtype=torch.int64).view(windows, window)


@lru_cache(maxsize=16)
def first_tokens(tokenizer: Any, text: str, n: int, margin: int = 64) -> tuple[int, ...]:
    """The first ``n`` token ids of ``text`` (no special tokens), equal to those of tokenizing it whole.

    Tokenizing a 1.3 MB text takes seconds, so a growing prefix is tokenized instead: a cut can
    only change how the last word or whitespace run before it is split (pre-tokenizers split at
    word boundaries), so once the prefix yields ``n + margin`` tokens the first ``n`` are final.
    """
    chars = max(4096, 8 * n)
    while True:
        ids = tokenizer(text[:chars], add_special_tokens=False)["input_ids"]
        if chars >= len(text) or len(ids) >= n + margin:
            return tuple(ids[:n])
        chars *= 2


@torch.inference_mode()
def window_logits(m: Any, ids: torch.Tensor, progress: bool = False, desc: str = "") -> Iterator[torch.Tensor]:
    """Yield the float32 logits ``(window, vocab)`` of each window (row) of ``ids``, one forward each."""
    from tqdm.auto import tqdm

    model = m.model
    for row in tqdm(ids, desc=desc or f"{m.name}: windows", disable=not progress, leave=False):
        out = model(input_ids=row[None], use_cache=False)
        logits = out.logits if hasattr(out, "logits") else out
        yield logits[0].float()


def window_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-probabilities (L-1, vocab), NLL of the actual next tokens (L-1,))`` of one window.

    Position ``t`` predicts token ``t + 1``; the last position predicts past the window and is
    not scored.
    """
    logp = torch.log_softmax(logits[:-1], dim=-1)
    nll = -logp.gather(1, ids[1:, None])[:, 0]
    return logp, nll


def token_nll(
    m: Any, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True
) -> torch.Tensor:
    """Negative log-likelihood ``(windows, window - 1)`` float32 of every scored token."""
    ids = token_windows(m, text, window, windows)
    rows = [window_logprobs(lg, row)[1] for lg, row in zip(window_logits(m, ids, progress), ids, strict=True)]
    return torch.stack(rows)


def logits(m: Any, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True) -> torch.Tensor:
    """All logits ``(windows, window, vocab)`` float32 (memory: 1.6 GB for SmolLM2 at the defaults;
    :func:`qlab.eval.reference` keeps only what KL needs)."""
    ids = token_windows(m, text, window, windows)
    return torch.stack(list(window_logits(m, ids, progress)))


def perplexity(m: Any, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True) -> float:
    """``exp(mean NLL)`` over ``windows * (window - 1)`` tokens of ``text`` (default: WikiText-2 test)."""
    return nll_to_perplexity(token_nll(m, text, window, windows, progress))


def nll_to_perplexity(nll: torch.Tensor) -> float:
    return math.exp(nll.double().mean().item())


__all__ = ["first_tokens", "logits", "nll_to_perplexity", "perplexity", "token_nll", "token_windows", "window_logits", "window_logprobs"]
