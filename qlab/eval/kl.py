"""KL divergence and top-1 agreement of a (quantized) model's next-token distribution vs a reference.

For every scored position (the perplexity protocol's ``windows * (window - 1)`` predictions)::

    KL(P_ref || Q) = sum_v p_ref(v) * (log p_ref(v) - log q(v))      (nats)
    top-1 agreement = mean[ argmax p_ref == argmax q ]

the two statistics llama.cpp's ``perplexity --kl-divergence`` reports ("Mean KLD", "Same top p").
KL sees the whole distribution, so it separates formats whose perplexities are within noise.

A sweep runs the float32 model once (:func:`reference`, which keeps its token ids and
log-probabilities) and then only the quantized models (:func:`compare`). The log-probabilities
take ``windows * (window - 1) * vocab * 4`` bytes: 1.6 GB for SmolLM2 at 16 x 512; pass
``dtype=torch.bfloat16`` to halve that at the cost of KL resolution (~1e-3 nats), or use fewer windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .perplexity import nll_to_perplexity, token_windows, window_logits, window_logprobs


def kl_divergence(ref_logits: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """KL(ref || model) and top-1 agreement over all positions of two logit tensors ``(..., vocab)``.

    Returns ``kl_mean``, ``kl_median``, ``kl_p99``, ``kl_max`` (nats), ``top1_agreement`` and
    ``n_tokens``. Also accepts log-probabilities (log_softmax is idempotent on them).
    """
    if ref_logits.shape != logits.shape:
        raise ValueError(f"shapes differ: reference {tuple(ref_logits.shape)} vs model {tuple(logits.shape)}")
    v = ref_logits.shape[-1]
    kl, same = _token_kl(ref_logits.reshape(-1, v), logits.reshape(-1, v))
    return summarize(kl, same)


def _token_kl(ref: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token KL (float32) and top-1 match (bool) of ``(n, vocab)`` rows."""
    lp = torch.log_softmax(ref.float(), dim=-1)
    lq = torch.log_softmax(logits.float(), dim=-1)
    # p * (log p - log q); terms with p == 0 contribute 0 (exp(-inf) * finite = 0)
    kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0)  # exact KL >= 0; rounding can go a hair below
    return kl, ref.argmax(-1) == logits.argmax(-1)


def summarize(kl: torch.Tensor, same: torch.Tensor) -> dict[str, float]:
    kl = kl.double().reshape(-1)
    return {
        "kl_mean": kl.mean().item(),
        "kl_median": kl.median().item(),
        "kl_p99": torch.quantile(kl, 0.99).item() if kl.numel() else float("nan"),
        "kl_max": kl.max().item(),
        "top1_agreement": same.double().mean().item(),
        "n_tokens": int(kl.numel()),
    }


@dataclass
class Reference:
    """The reference model's run over a text: token ids ``(windows, window)``, log-probabilities
    ``(windows, window - 1, vocab)`` of the scored positions, per-token NLL and perplexity."""

    name: str
    ids: torch.Tensor
    logprobs: torch.Tensor
    nll: torch.Tensor
    perplexity: float

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
    m: Any,
    text: str | None = None,
    window: int = 512,
    windows: int = 16,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> Reference:
    """Run the reference (float) model once and keep what :func:`compare` needs."""
    ids = token_windows(m, text, window, windows)
    vocab = None
    logprobs = nll = None
    for w, lg in enumerate(window_logits(m, ids, progress, desc=f"{m.name}: reference")):
        lp, n = window_logprobs(lg, ids[w])
        if logprobs is None:
            vocab = lp.shape[-1]
            logprobs = torch.empty(windows, window - 1, vocab, dtype=dtype)
            nll = torch.empty(windows, window - 1)
        logprobs[w] = lp
        nll[w] = n
    return Reference(m.name, ids, logprobs, nll, nll_to_perplexity(nll))


def compare(m: Any, ref: Reference, progress: bool = True) -> dict[str, float]:
    """Perplexity of ``m`` on the reference's tokens, and KL / top-1 agreement against it.

    Returns ``perplexity``, ``reference_perplexity``, ``delta_perplexity`` and the
    :func:`kl_divergence` statistics. The unmodified model gives KL exactly 0 when run with the
    same torch thread count as the reference (float32 GEMMs can differ in the last bit otherwise).
    """
    kls, sames, nlls = [], [], []
    for w, lg in enumerate(window_logits(m, ref.ids, progress, desc=f"{m.name}: vs reference")):
        lq, n = window_logprobs(lg, ref.ids[w])
        kl, same = _token_kl(ref.logprobs[w], lq)
        kls.append(kl)
        sames.append(same)
        nlls.append(n)
    ppl = nll_to_perplexity(torch.stack(nlls))
    out = {"perplexity": ppl, "reference_perplexity": ref.perplexity, "delta_perplexity": ppl - ref.perplexity}
    out.update(summarize(torch.stack(kls), torch.stack(sames)))
    return out


__all__ = ["Reference", "compare", "kl_divergence", "reference", "summarize"]
