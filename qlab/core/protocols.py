"""Perplexity protocols: which tokens form each window and which positions are scored.

Two protocols, shared by qlab's own evaluator (:mod:`qlab.core.lm`) and the llama.cpp backend
(:mod:`qlab.backends.llamacpp.run`), so both score the same tokens at the same positions:

``"full-window"`` (qlab's default, the figures of the lessons)
    the text is tokenized *without* BOS or any special token; its first ``windows * window``
    tokens are split into non-overlapping windows; each window is run from an empty context
    (positions restart at 0) and every token after the first is scored:
    ``windows * (window - 1)`` predictions.

``"llama-perplexity"`` (llama.cpp's ``llama-perplexity`` tool, the numbers of published tables)
    what ``perplexity()`` in llama.cpp's ``tools/perplexity/perplexity.cpp`` does: the *whole*
    text is tokenized with the vocabulary's special tokens (``common_tokenize(ctx, prompt,
    true)``: BOS in front when the vocabulary's ``add_bos_token`` is set, special-token text kept
    as plain text); chunk ``i`` is tokens ``[i * n_ctx, (i + 1) * n_ctx)``; when the vocabulary
    adds BOS, the first token of *every* chunk is replaced by BOS; only the second half is scored:
    logits of positions ``first = n_ctx / 2`` .. ``n_ctx - 2`` predict tokens ``first + 1`` ..
    ``n_ctx - 1``, ``n_ctx - 1 - first`` predictions per chunk. ``--kl-divergence`` scores the same
    positions.

Here ``window`` is llama.cpp's ``n_ctx`` (``-c``) and ``windows`` its ``--chunks``. llama.cpp also
refuses a text of fewer than ``2 * n_ctx`` tokens; the same check is made here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the protocol names, default first
PROTOCOLS = ("full-window", "llama-perplexity")


@dataclass(frozen=True)
class Protocol:
    """A validated protocol: its name, ``window`` (tokens per window / ``n_ctx``) and ``windows``."""

    name: str = "full-window"
    window: int = 512
    windows: int = 16

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise ValueError(f"protocol={self.name!r}: unknown; valid: {', '.join(map(repr, PROTOCOLS))}")
        for k in ("window", "windows"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{k} must be an int, got {v!r}")
        least = 3 if self.name == "llama-perplexity" else 2  # at least one scored prediction per window
        if self.window < least or self.windows < 1:
            raise ValueError(f"protocol={self.name!r} needs window >= {least} (one scored token per window) and "
                             f"windows >= 1, got window={self.window}, windows={self.windows}")

    @property
    def first(self) -> int:
        """The first scored logits row of a window (row ``t`` predicts token ``t + 1``)."""
        return self.window // 2 if self.name == "llama-perplexity" else 0

    @property
    def scored(self) -> int:
        """Scored predictions per window: ``window - 1 - first``."""
        return self.window - 1 - self.first

    @property
    def n_tokens(self) -> int:
        return self.windows * self.scored

    def text_tokens(self, bos: int | None) -> int:
        """How many text tokens (no special token) the windows take; llama-perplexity's own BOS
        in front of the text counts as the first token."""
        lead = 1 if bos is not None and self.name == "llama-perplexity" else 0
        return self.window * self.windows - lead

    def min_text_tokens(self, bos: int | None) -> int:
        """Text tokens to insist on: all windows, and for llama-perplexity at least ``2 * n_ctx``
        tokens in total (its ``tokens.size() < 2*n_ctx`` refusal)."""
        n = self.text_tokens(bos)
        if self.name == "llama-perplexity":
            n = max(n, 2 * self.window - (1 if bos is not None else 0))
        return n

    def windows_of(self, tokens: Sequence[int] | np.ndarray, bos: int | None) -> np.ndarray:
        """Token ids ``(windows, window)`` int64 from the text's tokens (no special token).

        ``bos``: the vocabulary's BOS id when it adds BOS (llama.cpp's ``llama_vocab_get_add_bos``),
        else None; only llama-perplexity uses it.
        """
        need = self.min_text_tokens(bos)
        toks = np.asarray(tokens, dtype=np.int64).reshape(-1)
        if len(toks) < need:
            raise ValueError(
                f"text has {len(toks)} tokens, {need} needed for protocol={self.name!r} with "
                f"window={self.window}, windows={self.windows}"
            )
        toks = toks[: self.text_tokens(bos)]
        if self.name == "llama-perplexity" and bos is not None:
            toks = np.concatenate([[bos], toks])
        ids = toks.reshape(self.windows, self.window).copy()
        if self.name == "llama-perplexity" and bos is not None:
            ids[:, 0] = bos  # perplexity.cpp: "add BOS token for the first batch of each chunk"
        return ids

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.name, "window": self.window, "windows": self.windows}


def protocol(name: str | Protocol = "full-window", window: int = 512, windows: int = 16) -> Protocol:
    """:class:`Protocol` from a name (``window``/``windows`` validated), or ``name`` if already one."""
    return name if isinstance(name, Protocol) else Protocol(name, window, windows)


def tokenizer_bos(tokenizer: Any) -> int | None:
    """The BOS id a transformers tokenizer adds in front of a text, or None if it adds none (the
    counterpart of llama.cpp's ``llama_vocab_get_add_bos``; SmolLM2's GGUF sets
    ``tokenizer.ggml.add_bos_token = false``)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    ids = tokenizer("a")["input_ids"]
    return int(bos) if len(ids) > 0 and ids[0] == bos else None


__all__ = ["PROTOCOLS", "Protocol", "protocol", "tokenizer_bos"]
