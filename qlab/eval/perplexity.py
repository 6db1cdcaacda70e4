"""Perplexity of a causal LM under one of two protocols (see :mod:`qlab.core.protocols`).

* ``protocol="full-window"`` (default): non-overlapping windows, no BOS, every token after the
  first of its window scored -- qlab's protocol, the one all lesson figures use;
* ``protocol="llama-perplexity"``: llama.cpp's ``llama-perplexity`` tool exactly (BOS in place of
  each chunk's first token when the vocabulary adds BOS, only the second half of each chunk
  scored), so the number compares with published llama.cpp tables.

``qlab.backends.llamacpp.perplexity`` runs the same protocols inside llama.cpp, so the two agree
token for token. Neither slides a stride over the text; compare numbers only under the same
protocol, window and count.
"""

from __future__ import annotations

import torch

from ..core.lm import first_tokens, nll_to_perplexity, token_windows, window_logits, window_logprobs
from ..core.model import Loaded
from ..core.protocols import PROTOCOLS, Protocol, protocol


def token_nll(
    m: Loaded, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True,
    protocol: str | Protocol = "full-window",
) -> torch.Tensor:  # fmt: skip
    """Negative log-likelihood ``(windows, scored)`` float32 of every scored token
    (``scored = window - 1`` for full-window, ``window - 1 - window // 2`` for llama-perplexity)."""
    ids = token_windows(m, text, window, windows, protocol)
    first = protocol.first if isinstance(protocol, Protocol) else Protocol(protocol, window, windows).first
    rows = [window_logprobs(lg, row, first)[1] for lg, row in zip(window_logits(m, ids, progress), ids, strict=True)]
    return torch.stack(rows)


def logits(m: Loaded, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True) -> torch.Tensor:
    """All logits ``(windows, window, vocab)`` float32 of the full-window protocol's windows
    (memory: 1.6 GB for SmolLM2 at the defaults; :func:`qlab.eval.reference` keeps only what KL needs)."""
    ids = token_windows(m, text, window, windows)
    return torch.stack(list(window_logits(m, ids, progress)))


def perplexity(
    m: Loaded, text: str | None = None, window: int = 512, windows: int = 16, progress: bool = True,
    protocol: str | Protocol = "full-window",
) -> float:  # fmt: skip
    """``exp(mean NLL)`` over the scored tokens of ``text`` (default: WikiText-2 test) under ``protocol``."""
    return nll_to_perplexity(token_nll(m, text, window, windows, progress, protocol))


__all__ = ["PROTOCOLS", "Protocol", "first_tokens", "logits", "nll_to_perplexity", "perplexity", "protocol", "token_nll",
           "token_windows", "window_logits", "window_logprobs"]  # fmt: skip
