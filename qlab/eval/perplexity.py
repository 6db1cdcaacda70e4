"""Perplexity of a causal LM with llama.cpp's fixed-window protocol (see :mod:`qlab.core.lm`).

The protocol is the one ``qlab.backends.llamacpp.perplexity`` runs inside llama.cpp, so the two
agree token for token. It is the classic fixed-context evaluation (no sliding stride), so values
are higher than strided evaluations of the same model; compare numbers only under the same window
and count.
"""

from __future__ import annotations

import torch

from ..core.lm import first_tokens, nll_to_perplexity, token_windows, window_logits, window_logprobs
from ..core.model import Loaded


def token_nll(
    m: Loaded, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True
) -> torch.Tensor:
    """Negative log-likelihood ``(windows, window - 1)`` float32 of every scored token."""
    ids = token_windows(m, text, window, windows)
    rows = [window_logprobs(lg, row)[1] for lg, row in zip(window_logits(m, ids, progress), ids, strict=True)]
    return torch.stack(rows)


def logits(m: Loaded, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True) -> torch.Tensor:
    """All logits ``(windows, window, vocab)`` float32 (memory: 1.6 GB for SmolLM2 at the defaults;
    :func:`qlab.eval.reference` keeps only what KL needs)."""
    ids = token_windows(m, text, window, windows)
    return torch.stack(list(window_logits(m, ids, progress)))


def perplexity(m: Loaded, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True) -> float:
    """``exp(mean NLL)`` over ``windows * (window - 1)`` tokens of ``text`` (default: WikiText-2 test)."""
    return nll_to_perplexity(token_nll(m, text, window, windows, progress))


__all__ = ["first_tokens", "logits", "nll_to_perplexity", "perplexity", "token_nll", "token_windows", "window_logits", "window_logprobs"]
