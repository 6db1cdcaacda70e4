"""Streaming causal-LM evaluation against a float reference: perplexity, KL divergence, top-1.

The protocol is ``qlab.eval.perplexity``'s: tokenize the text without BOS, take the first
``windows * window`` tokens, split them into non-overlapping windows and score every token after
the first of each window. The reference forward runs **once**; what a sweep needs from it is
kept per window:

* the reference log-probabilities as float16 (``windows x (window-1) x vocab``; 0.8 GB for
  SmolLM2 with 16 x 512, half of ``qlab.eval.reference``'s float32). They are renormalised in
  float32 before use; then KL(p~ || q) - KL(p || q) = KL(p~ || p) + sum (p~ - p)(log p - log q),
  products of two small quantities (fp16's relative rounding 2^-11 and the log-ratio), far below
  the KL of an 8-bit format (the tests check against the float32 reference);
* the reference's top-1 token (exact) and its NLL (float64 sums).

KL(P_ref || P_quant) per token is the quantity llama.cpp's ``perplexity --kl-divergence``
reports (mean over scored tokens); top-1 agreement is its "same top p".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..quantize.recipes import torch_module


def default_text() -> str:
    """The WikiText-2 test text qlab ships (``qlab.eval.wikitext2_test``)."""
    from ..eval import wikitext2_test

    return wikitext2_test()


def token_windows(m: Any, text: str | None, window: int, windows: int) -> torch.Tensor:
    """``[windows, window]`` token ids: ``qlab.eval.token_windows`` (the perplexity protocol)."""
    from ..eval.perplexity import token_windows as windows_of

    return windows_of(m, text, window, windows)


def _logits(mod: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = mod(input_ids=ids, use_cache=False)
    return (out.logits if hasattr(out, "logits") else out[0]).float()


@dataclass
class LMReference:
    """The float model's predictions on fixed token windows (see module docstring)."""

    tokens: torch.Tensor  # [windows, window] int64
    logprobs: torch.Tensor  # [windows, window-1, vocab] float16
    top1: torch.Tensor  # [windows, window-1] int64
    nll: float  # mean negative log-likelihood of the scored tokens

    @property
    def perplexity(self) -> float:
        return float(torch.tensor(self.nll, dtype=torch.float64).exp())


def _batches(n: int, batch: int) -> list[slice]:
    return [slice(i, min(i + batch, n)) for i in range(0, n, batch)]


def lm_reference(
    m: Any, text: str | None = None, window: int = 512, windows: int = 16, batch: int = 4, progress: bool = False
) -> LMReference:
    """Run the float model once over the windows and keep what comparisons need.

    ``batch`` windows go through the model together (about twice as fast as one at a time on
    2 CPU cores); the log-softmax and the statistics are then taken one window at a time.
    """
    from tqdm.auto import tqdm

    mod = torch_module(m)
    tokens = token_windows(m, text, window, windows)
    lps, tops, nll = [], [], torch.zeros((), dtype=torch.float64)
    with torch.inference_mode():
        for s in tqdm(_batches(windows, batch), desc="reference", disable=not progress, leave=False):
            for ids, logits in zip(tokens[s], _logits(mod, tokens[s]), strict=True):  # one window at a time
                lp = torch.log_softmax(logits[:-1], dim=-1)
                nll -= lp.gather(-1, ids[1:, None]).sum(dtype=torch.float64)
                tops.append(lp.argmax(-1))
                lps.append(lp.half())
    n = windows * (window - 1)
    return LMReference(tokens, torch.stack(lps), torch.stack(tops), float(nll) / n)


def lm_compare(m: Any, ref: LMReference, batch: int = 4, progress: bool = False) -> dict[str, float]:
    """Perplexity, mean KL(reference || model) and top-1 agreement of ``m`` on ``ref``'s windows."""
    from tqdm.auto import tqdm

    mod = torch_module(m)
    windows = ref.tokens.shape[0]
    nll = torch.zeros((), dtype=torch.float64)
    kl = torch.zeros((), dtype=torch.float64)
    same = 0
    with torch.inference_mode():
        for s in tqdm(_batches(windows, batch), desc="evaluating", disable=not progress, leave=False):
            for w, logits in zip(range(s.start, s.stop), _logits(mod, ref.tokens[s]), strict=True):
                lq = torch.log_softmax(logits[:-1], dim=-1)
                nll -= lq.gather(-1, ref.tokens[w, 1:, None]).sum(dtype=torch.float64)
                lp = torch.log_softmax(ref.logprobs[w].float(), dim=-1)  # renormalise the fp16 copy
                kl += (lp.exp() * (lp - lq)).sum(dtype=torch.float64)
                same += int((lq.argmax(-1) == ref.top1[w]).sum())
    n = ref.top1.numel()
    mean_nll = float(nll) / n
    return {
        "perplexity": float(torch.tensor(mean_nll, dtype=torch.float64).exp()),
        "nll": mean_nll,
        "kl": float(kl) / n,
        "top1": same / n,
    }
