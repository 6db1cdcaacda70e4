"""The one language-model evaluator: perplexity, KL divergence and top-1 agreement.

Protocol (llama.cpp's fixed-window ``perplexity``, so that qlab and llama.cpp agree token for token):

1. tokenize the text (default: the WikiText-2 test split, Merity et al. 2016) *without* BOS or any
   special token;
2. take the first ``windows * window`` tokens (a ValueError if the text is shorter) and split them
   into ``windows`` non-overlapping windows of ``window`` tokens;
3. run each window independently (positions restart at 0, no cache carried over) and score every
   token after the first of its window: ``windows * (window - 1)`` predictions;
4. perplexity = ``exp(mean negative log-likelihood)`` (natural log, mean in float64).

Against a float reference, for every scored position::

    KL(P_ref || Q) = sum_v p_ref(v) * (log p_ref(v) - log q(v))      (nats)
    top-1 agreement = mean[ argmax p_ref == argmax q ]

the statistics llama.cpp's ``perplexity --kl-divergence`` reports ("Mean KLD", "Same top p").
:func:`reference` runs the float model once and keeps its token ids, log-probabilities (float32,
or float16 to halve the memory -- 0.8 GB for SmolLM2 at 16 x 512 -- renormalised in float32 before
use), exact top-1 tokens and per-token NLL; :func:`compare` then runs only the quantized model.
Every comparison returns the same keys, :data:`METRICS`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from .model import Loaded, torch_module
from .text import wikitext2_test

#: the keys of :func:`compare` (and of :func:`kl_divergence`: the last six)
METRICS = ("perplexity", "reference_perplexity", "delta_perplexity", "nll",
           "kl_mean", "kl_median", "kl_p99", "kl_max", "top1_agreement", "n_tokens")  # fmt: skip

#: the short column names sweeps and sensitivity tables give the metrics they keep of :func:`compare`
COLUMNS = {"perplexity": "perplexity", "nll": "nll", "kl_mean": "kl", "top1_agreement": "top1"}


def columns(result: dict[str, float]) -> dict[str, float]:
    """The :data:`COLUMNS` of a :func:`compare` result (those it has: llama.cpp's comparison reports
    no ``nll``), under their short names (``kl``, ``top1``)."""
    return {short: result[key] for key, short in COLUMNS.items() if key in result}


def token_windows(m: Loaded, text: str | None = None, window: int = 512, windows: int = 16) -> torch.Tensor:
    """Token ids ``(windows, window)`` int64 of ``text`` (default: WikiText-2 test), no BOS."""
    if window < 2 or windows < 1:
        raise ValueError(f"need window >= 2 and windows >= 1, got window={window}, windows={windows}")
    if m.tokenizer is None:
        raise ValueError(f"{m.name} has no tokenizer: perplexity needs a causal language model")
    kind = getattr(m, "kind", "causal-lm")
    if kind != "causal-lm":
        raise ValueError(
            f"{m.name} is a {kind!r} model: perplexity, KL divergence and top-1 agreement need a causal "
            f"language model (kind 'causal-lm', e.g. 'smollm2-135m'); use the model's evaluate() instead"
        )
    trained = getattr(getattr(torch_module(m), "config", None), "max_position_embeddings", None)
    if isinstance(trained, int) and window > trained:
        warnings.warn(
            f"window={window} is beyond {m.name}'s trained context of {trained} tokens "
            f"(max_position_embeddings): positions past it were never trained, so the perplexity "
            f"measures extrapolation, not the model; use window <= {trained}",
            stacklevel=3,
        )
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
def window_logits(
    m: Loaded, ids: torch.Tensor, progress: bool = False, desc: str = "", batch: int = 1
) -> Iterator[torch.Tensor]:
    """Yield the float32 logits ``(window, vocab)`` of each window (row) of ``ids``; ``batch``
    windows go through the model per forward (faster on CPU; one at a time by default)."""
    from tqdm.auto import tqdm

    model = torch_module(m)
    starts = range(0, ids.shape[0], batch)
    for s in tqdm(starts, desc=desc or f"{m.name}: windows", disable=not progress, leave=False):
        out = model(input_ids=ids[s : s + batch], use_cache=False)
        logits = out.logits if hasattr(out, "logits") else out[0] if isinstance(out, tuple) else out
        yield from logits.float()


def window_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-probabilities (L-1, vocab), NLL of the actual next tokens (L-1,))`` of one window.

    Position ``t`` predicts token ``t + 1``; the last position predicts past the window and is
    not scored.
    """
    logp = torch.log_softmax(logits[:-1], dim=-1)
    nll = -logp.gather(1, ids[1:, None])[:, 0]
    return logp, nll


def nll_to_perplexity(nll: torch.Tensor) -> float:
    return math.exp(nll.double().mean().item())


def token_kl(ref: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-token KL(ref || model) in float32 of ``(n, vocab)`` rows of logits or log-probabilities."""
    lp = torch.log_softmax(ref.float(), dim=-1)  # renormalises a float16 copy as well
    lq = torch.log_softmax(logits.float(), dim=-1)
    # p * (log p - log q); terms with p == 0 contribute 0 (exp(-inf) * finite = 0)
    return (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0)  # exact KL >= 0; rounding can go a hair below


def summarize(kl: torch.Tensor, same: torch.Tensor) -> dict[str, float]:
    """Mean / median / 99th percentile / max of per-token KL, top-1 agreement and the token count."""
    kl = kl.double().reshape(-1)
    return {
        "kl_mean": kl.mean().item(),
        "kl_median": kl.median().item(),
        "kl_p99": torch.quantile(kl, 0.99).item() if kl.numel() else float("nan"),
        "kl_max": kl.max().item(),
        "top1_agreement": same.double().mean().item(),
        "n_tokens": int(kl.numel()),
    }


def kl_divergence(ref_logits: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """KL(ref || model) and top-1 agreement over all positions of two logit tensors ``(..., vocab)``.

    Returns ``kl_mean``, ``kl_median``, ``kl_p99``, ``kl_max`` (nats), ``top1_agreement`` and
    ``n_tokens``. Also accepts log-probabilities (log_softmax is idempotent on them).
    """
    if ref_logits.shape != logits.shape:
        raise ValueError(f"shapes differ: reference {tuple(ref_logits.shape)} vs model {tuple(logits.shape)}")
    v = ref_logits.shape[-1]
    ref, other = ref_logits.reshape(-1, v), logits.reshape(-1, v)
    return summarize(token_kl(ref, other), ref.argmax(-1) == other.argmax(-1))


@dataclass
class Reference:
    """The reference model's run over a text: token ids ``(windows, window)``, log-probabilities
    ``(windows, window - 1, vocab)`` of the scored positions (float32 or float16), their exact
    top-1 tokens, per-token NLL and perplexity."""

    name: str
    ids: torch.Tensor
    logprobs: torch.Tensor
    nll: torch.Tensor
    perplexity: float
    top1: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.top1 is None:
            self.top1 = self.logprobs.argmax(-1)

    @property
    def window(self) -> int:
        return int(self.ids.shape[1])

    @property
    def windows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        return self.logprobs.numel() * self.logprobs.element_size()


def reference(
    m: Loaded,
    text: str | None = None,
    window: int = 512,
    windows: int = 16,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    batch: int = 1,
) -> Reference:
    """Run the reference (float) model once and keep what :func:`compare` needs."""
    ids = token_windows(m, text, window, windows)
    logprobs = nll = top1 = None
    for w, lg in enumerate(window_logits(m, ids, progress, f"{m.name}: reference", batch)):
        lp, n = window_logprobs(lg, ids[w])
        if logprobs is None:
            logprobs = torch.empty(windows, window - 1, lp.shape[-1], dtype=dtype)
            nll = torch.empty(windows, window - 1)
            top1 = torch.empty(windows, window - 1, dtype=torch.int64)
        logprobs[w] = lp
        nll[w] = n
        top1[w] = lp.argmax(-1)
    return Reference(getattr(m, "name", "model"), ids, logprobs, nll, nll_to_perplexity(nll), top1)


def compare(m: Loaded, ref: Reference, progress: bool = True, batch: int = 1) -> dict[str, float]:
    """Perplexity of ``m`` on the reference's tokens, and KL / top-1 agreement against it.

    Returns :data:`METRICS`: ``perplexity``, ``reference_perplexity``, ``delta_perplexity``, ``nll``
    (mean) and the :func:`kl_divergence` statistics. The unmodified model gives KL exactly 0 when
    run with the same torch thread count and ``batch`` as the reference (float32 GEMMs can differ
    in the last bit otherwise).
    """
    label = f"{getattr(m, 'name', 'model')}: vs reference"
    return compare_logits(ref, window_logits(m, ref.ids, progress, label, batch))


def compare_logits(ref: Reference, logits: Iterable[torch.Tensor]) -> dict[str, float]:
    """:func:`compare`'s figures from the logits ``(window, vocab)`` of each of the reference's
    windows, however they were computed (a PyTorch model, or a runtime such as llama.cpp)."""
    kls, sames, nlls = [], [], []
    for w, lg in enumerate(logits):
        lq, n = window_logprobs(lg, ref.ids[w])
        kls.append(token_kl(ref.logprobs[w], lq))
        sames.append(lq.argmax(-1) == ref.top1[w])
        nlls.append(n)
    nll = torch.stack(nlls).double().mean().item()
    ppl = math.exp(nll)
    out = {"perplexity": ppl, "reference_perplexity": ref.perplexity, "delta_perplexity": ppl - ref.perplexity,
           "nll": nll}  # fmt: skip
    out.update(summarize(torch.stack(kls), torch.stack(sames)))
    return out

__all__ = [
    "COLUMNS", "METRICS", "Reference", "columns", "compare", "compare_logits", "first_tokens", "kl_divergence", "nll_to_perplexity", "reference",
    "summarize", "token_kl", "token_windows", "window_logits", "window_logprobs",
]  # fmt: skip
