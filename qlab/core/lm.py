"""The one language-model evaluator: perplexity, KL divergence and top-1 agreement.

Which tokens are scored is a :mod:`protocol <qlab.core.protocols>`:

* ``"full-window"`` (the default, every figure of the lessons): the text tokenized *without* BOS,
  its first ``windows * window`` tokens split into non-overlapping windows, each run from an
  empty context, every token after the first of its window scored (``windows * (window - 1)``);
* ``"llama-perplexity"``: llama.cpp's ``llama-perplexity`` tool exactly -- BOS in place of each
  chunk's first token when the vocabulary adds BOS, only the second half of each chunk scored --
  the protocol of published llama.cpp tables.

perplexity = ``exp(mean negative log-likelihood)`` (natural log, mean in float64). Against a float
reference, for every scored position::

    KL(P_ref || Q) = sum_v p_ref(v) * (log p_ref(v) - log q(v))      (nats)
    top-1 agreement = mean[ argmax p_ref == argmax q ]

and the rest of the statistics ``llama-perplexity --kl-divergence`` reports
(:class:`~qlab.core.klreport.KLReport`). :func:`reference` runs the float model once and keeps its
token ids, log-probabilities of the scored positions (float32, or float16 to halve the memory --
0.8 GB for SmolLM2 at 16 x 512 -- renormalised in float32 before use), exact top-1 tokens and
per-token NLL; :func:`kl_report` then runs only the quantized model, :func:`compare` gives its
compact figures. One name per figure everywhere (evaluator, sweeps, caches): :data:`METRICS`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .klreport import KLReport, median, percentile
from .model import Loaded, torch_module
from .protocols import PROTOCOLS, Protocol, protocol, tokenizer_bos
from .text import wikitext2_test

#: the keys of :func:`compare` (and of :func:`kl_divergence`: the last six); ``kl`` is the mean KL
#: (nats) and ``top1`` the top-1 agreement, under these names in every sweep, table and cache
METRICS = ("perplexity", "reference_perplexity", "delta_perplexity", "nll",
           "kl", "kl_median", "kl_p99", "kl_max", "top1", "n_tokens")  # fmt: skip

#: rows (scored positions) of a window that :func:`window_stats` and :func:`reference` take at once:
#: a (32, 49152) float32 block is 6 MB, cache-sized; the figures do not depend on it (row-wise steps)
CHUNK_ROWS = 32


def token_windows(
    m: Loaded, text: str | None = None, window: int = 512, windows: int = 16, protocol: str | Protocol = "full-window"
) -> torch.Tensor:
    """Token ids ``(windows, window)`` int64 of ``text`` (default: WikiText-2 test) under ``protocol``
    (``"full-window"``: no BOS; ``"llama-perplexity"``: BOS first in each window if the tokenizer adds one)."""
    proto = _protocol(protocol, window, windows)
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
    bos = tokenizer_bos(m.tokenizer) if proto.name == "llama-perplexity" else None
    ids = first_tokens(m.tokenizer, wikitext2_test() if text is None else text, proto.min_text_tokens(bos))
    return torch.from_numpy(proto.windows_of(ids, bos))


def _protocol(name: str | Protocol, window: int, windows: int) -> Protocol:
    if isinstance(name, Protocol):
        if (name.window, name.windows) != (window, windows):
            raise ValueError(f"protocol {name} disagrees with window={window}, windows={windows}")
        return name
    return protocol(name, window, windows)


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


def window_logprobs(logits: torch.Tensor, ids: torch.Tensor, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log-probabilities (L-1-first, vocab), NLL of the actual next tokens (L-1-first,))`` of
    one window: logits rows ``first`` .. ``L-2``, row ``t`` predicting token ``t + 1`` (the last
    row predicts past the window and is never scored; ``first`` is :attr:`Protocol.first`)."""
    logp = torch.log_softmax(logits[first:-1], dim=-1)
    nll = -logp.gather(1, ids[first + 1 :, None])[:, 0]
    return logp, nll


def nll_to_perplexity(nll: torch.Tensor) -> float:
    return math.exp(nll.double().mean().item())


def token_kl(ref: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-token KL(ref || model) in float32 of ``(n, vocab)`` rows of logits or log-probabilities."""
    lp = torch.log_softmax(ref.float(), dim=-1)  # renormalises a float16 copy as well
    lq = torch.log_softmax(logits.float(), dim=-1)
    # p * (log p - log q); terms with p == 0 contribute 0 (exp(-inf) * finite = 0)
    return (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0)  # exact KL >= 0; rounding can go a hair below


def row_chunks(n: int, rows: int | None = None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` splitting ``n`` rows into nearly equal blocks of at most ``rows``
    (default :data:`CHUNK_ROWS`); never a 1-row block unless ``n == 1``, so that a reduction
    over the vocabulary is split across threads exactly as for the whole window."""
    rows = CHUNK_ROWS if rows is None else rows
    k = max(1, -(-n // rows))
    size = -(-n // k)
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def window_stats(
    logits: torch.Tensor, ids: torch.Tensor, first: int, ref_logprobs: torch.Tensor, ref_top1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per scored token of one window: ``(KL(ref || model), same top-1, NLL)``.

    Bit for bit ``token_kl(ref_logprobs, lq)``, ``lq.argmax(-1) == ref_top1`` and the NLL of
    ``lq, nll = window_logprobs(logits, ids, first)``, computed :data:`CHUNK_ROWS` rows at a time:
    every step is row-wise, and a ``(rows, vocab)`` block stays in the CPU cache where the
    whole window's ``(window, vocab)`` temporaries (100 MB each at 512 x 49k) stream through
    memory at each of the dozen steps.
    """
    rows = logits[first:-1]
    n = rows.shape[0]
    if ref_logprobs.shape[0] != n:
        raise ValueError(f"logits score {n} positions, the reference window has {ref_logprobs.shape[0]}")
    kl, nll = torch.empty(n), torch.empty(n, dtype=rows.dtype)
    same = torch.empty(n, dtype=torch.bool)
    for a, b in row_chunks(n):
        lq = torch.log_softmax(rows[a:b], dim=-1)
        nll[a:b] = -lq.gather(1, ids[first + 1 + a : first + 1 + b, None])[:, 0]
        same[a:b] = lq.argmax(-1) == ref_top1[a:b]
        kl[a:b] = token_kl(ref_logprobs[a:b], lq)
    return kl, same, nll


def summarize(kl: torch.Tensor, same: torch.Tensor) -> dict[str, float]:
    """Mean / median / 99th percentile / max of per-token KL (llama.cpp's median and percentile,
    :mod:`qlab.core.klreport`), top-1 agreement and the token count."""
    k = np.sort(kl.detach().reshape(-1).double().numpy())
    nan = float("nan")
    return {
        "kl": float(k.mean()) if k.size else nan,
        "kl_median": median(k) if k.size else nan,
        "kl_p99": percentile(k, 0.99) if k.size else nan,
        "kl_max": float(k[-1]) if k.size else nan,
        "top1": same.double().mean().item(),
        "n_tokens": int(k.size),
    }


def kl_divergence(ref_logits: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """KL(ref || model) and top-1 agreement over all positions of two logit tensors ``(..., vocab)``.

    Returns ``kl`` (mean), ``kl_median``, ``kl_p99``, ``kl_max`` (nats), ``top1`` and
    ``n_tokens``. Also accepts log-probabilities (log_softmax is idempotent on them).
    """
    for name, t in (("ref_logits", ref_logits), ("logits", logits)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of logits, got {type(t).__name__}")
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name} must hold real numbers (float or int logits), got dtype {t.dtype}")
        if t.dim() == 0 or t.numel() == 0:
            raise ValueError(f"{name} has no positions to compare (shape {tuple(t.shape)}); need (..., vocab)")
        if not bool(torch.isfinite(t.double()).all()):
            raise ValueError(f"{name} has NaN/Inf values; KL is defined for finite logits")
    if ref_logits.shape != logits.shape:
        raise ValueError(f"shapes differ: reference {tuple(ref_logits.shape)} vs model {tuple(logits.shape)}")
    v = ref_logits.shape[-1]
    ref, other = ref_logits.reshape(-1, v), logits.reshape(-1, v)
    return summarize(token_kl(ref, other), ref.argmax(-1) == other.argmax(-1))


@dataclass
class Reference:
    """The reference model's run over a text: token ids ``(windows, window)``, log-probabilities
    ``(windows, scored, vocab)`` of the scored positions (float32 or float16), their exact top-1
    tokens, per-token NLL ``(windows, scored)``, perplexity and the :class:`Protocol`."""

    name: str
    ids: torch.Tensor
    logprobs: torch.Tensor
    nll: torch.Tensor
    perplexity: float
    top1: torch.Tensor | None = None
    protocol: Protocol = field(default_factory=Protocol)

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
    protocol: str | Protocol = "full-window",
) -> Reference:
    """Run the reference (float) model once and keep what :func:`compare` needs."""
    proto = _protocol(protocol, window, windows)
    ids = token_windows(m, text, window, windows, proto)
    first, logprobs, nll, top1 = proto.first, None, None, None
    for w, lg in enumerate(window_logits(m, ids, progress, f"{m.name}: reference", batch)):
        if logprobs is None:
            logprobs = torch.empty(windows, proto.scored, lg.shape[-1], dtype=dtype)
            nll = torch.empty(windows, proto.scored)
            top1 = torch.empty(windows, proto.scored, dtype=torch.int64)
        for a, b in row_chunks(proto.scored):  # window_logprobs, a cache-sized block of rows at a time
            lp = torch.log_softmax(lg[first + a : first + b], dim=-1)
            logprobs[w, a:b] = lp
            nll[w, a:b] = -lp.gather(1, ids[w, first + 1 + a : first + 1 + b, None])[:, 0]
            top1[w, a:b] = lp.argmax(-1)
    return Reference(getattr(m, "name", "model"), ids, logprobs, nll, nll_to_perplexity(nll), top1, proto)


def kl_report(m: Loaded, ref: Reference, progress: bool = True, batch: int = 1) -> KLReport:
    """``llama-perplexity --kl-divergence``'s statistics of ``m`` against the reference run."""
    label = f"{getattr(m, 'name', 'model')}: vs reference"
    return report_logits(ref, window_logits(m, ref.ids, progress, label, batch))


def compare(m: Loaded, ref: Reference, progress: bool = True, batch: int = 1) -> dict[str, float]:
    """Perplexity of ``m`` on the reference's tokens, and KL / top-1 agreement against it.

    Returns :data:`METRICS`: ``perplexity``, ``reference_perplexity``, ``delta_perplexity``, ``nll``
    (mean) and the :func:`kl_divergence` statistics (:meth:`KLReport.metrics` of :func:`kl_report`).
    The unmodified model gives KL exactly 0 when run with the same torch thread count and
    ``batch`` as the reference (float32 GEMMs can differ in the last bit otherwise).
    """
    return kl_report(m, ref, progress, batch).metrics()


def report_logits(ref: Reference, logits: Iterable[torch.Tensor]) -> KLReport:
    """:class:`KLReport` from the logits ``(window, vocab)`` of each of the reference's windows,
    however they were computed (a PyTorch model, or a runtime such as llama.cpp)."""
    first = ref.protocol.first
    kls, sames, nlls = [], [], []
    for w, lg in enumerate(logits):
        if w >= ref.windows:
            raise ValueError(f"got logits of more than {ref.windows} windows, the reference has {ref.windows}")
        kl, same, n = window_stats(lg, ref.ids[w], first, ref.logprobs[w], ref.top1[w])
        kls.append(kl)
        sames.append(same)
        nlls.append(n)
    if len(nlls) != ref.windows:
        raise ValueError(f"got logits of {len(nlls)} windows, the reference has {ref.windows}")
    scored = ref.protocol.scored
    pos = np.arange(first + 1, ref.window)
    return KLReport(
        nll=torch.cat(nlls).double().numpy(), nll_base=ref.nll.reshape(-1).double().numpy(),
        kl=torch.cat(kls).double().numpy(), same_top=torch.cat(sames).numpy(),
        token=ref.ids[:, first + 1 :].reshape(-1).numpy(), window=np.repeat(np.arange(ref.windows), scored),
        position=np.tile(pos, ref.windows), ids=ref.ids.numpy(), protocol=ref.protocol.to_dict(),
    )  # fmt: skip


def compare_logits(ref: Reference, logits: Iterable[torch.Tensor]) -> dict[str, float]:
    """:func:`compare`'s figures from logits computed elsewhere (see :func:`report_logits`)."""
    return report_logits(ref, logits).metrics()


__all__ = [
    "KLReport", "METRICS", "PROTOCOLS", "Protocol", "Reference", "compare", "compare_logits", "first_tokens",
    "kl_divergence", "kl_report", "nll_to_perplexity", "reference", "report_logits", "summarize", "token_kl",
    "token_windows", "window_logits", "window_logprobs", "window_stats", "row_chunks", "CHUNK_ROWS",
]  # fmt: skip
