"""Same prompt, every format: greedy continuations of a causal LM, float vs quantized.

Perplexity and KL summarise thousands of tokens; a learner *reads* text. :func:`same_prompt`
continues one prompt greedily (argmax at every step, no sampling: deterministic) with the float
model and with the model quantized by each recipe, and records for every quantized row

* the first generated token where it leaves the float continuation (``diverge``), and
* the per-token KL divergence ``KL(P_float || P_quant)`` of the next-token distributions along the
  *float* continuation (teacher-forced: both models read the same tokens, so position ``i`` of
  every row is comparable; it is the quantity llama-perplexity's ``--kl-divergence`` averages).

Byte-level BPE splits characters outside its training mix into several tokens (a Hangul syllable
is 2-3 byte tokens in SmolLM2's vocabulary), so the text is shown in *display units*: runs of
tokens that decode to whole characters (:func:`display_units`).

Greedy decoding is exact arithmetic on float32 logits: where the two best logits are nearly tied,
another CPU's summation order can pick the other token. ``margin`` (float row) records the gap
between the best and second-best logit at each step so a reader (and the tests) can see where a
continuation is fragile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..core.model import Loaded, torch_module
from ..quantize.model import WeightSnapshot, quantize_model, recipe_label

DEFAULT_RECIPES = ("q8_0", "q4_k_m", "q4_0", "q2_k", "tq2_0")


@dataclass
class Continuation:
    """One row: ``label`` (``"f32"`` for the float model), its bits per weight, the generated ids
    and their text pieces, ``diverge`` (index of the first token that differs from the float row;
    ``None`` when identical), ``kl`` (per generated position, nats; zeros for the float row),
    ``margin`` (float row: best minus second-best logit per step)."""

    label: str
    bits_per_weight: float
    ids: list[int]
    pieces: list[str]
    diverge: int | None = None
    kl: list[float] = field(default_factory=list)
    margin: list[float] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def mean_kl(self) -> float:
        return sum(self.kl) / len(self.kl) if self.kl else 0.0


@dataclass
class SamePrompt:
    """The result of :func:`same_prompt`: the prompt, its token count, and one row per model."""

    prompt: str
    prompt_tokens: int
    n_tokens: int
    rows: list[Continuation]

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "prompt_tokens": self.prompt_tokens, "n_tokens": self.n_tokens,
                "rows": [asdict(r) for r in self.rows]}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamePrompt:
        return cls(d["prompt"], int(d["prompt_tokens"]), int(d["n_tokens"]), [Continuation(**r) for r in d["rows"]])


def _check(prompt: Any, recipes: Any, n_tokens: Any) -> list[Any]:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or not 1 <= n_tokens <= 256:
        raise ValueError(f"n_tokens must be an int in 1..256, got {n_tokens!r}")
    if isinstance(recipes, str) or not isinstance(recipes, Sequence):
        raise TypeError(f"recipes must be a list of recipes (e.g. ['q4_0', 'q2_k']), got {recipes!r}")
    return list(recipes)


@torch.no_grad()
def greedy(model: torch.nn.Module, ids: list[int], n_tokens: int) -> tuple[list[int], list[float]]:
    """``n_tokens`` argmax tokens after ``ids`` (with the KV cache) and the top-1/top-2 logit gap of each step."""
    out = model(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
    past, logits = out.cache, out.logits[0, -1]
    new, margin = [], []
    for _ in range(n_tokens):
        top = torch.topk(logits.float(), 2)
        nxt = int(top.indices[0])
        new.append(nxt)
        margin.append(float(top.values[0] - top.values[1]))
        out = model(torch.tensor([[nxt]]), cache=past, use_cache=True)
        past, logits = out.cache, out.logits[0, -1]
    return new, margin


@torch.no_grad()
def next_token_logprobs(model: torch.nn.Module, ids: list[int], n_prompt: int) -> torch.Tensor:
    """log-softmax (float64) of the next-token distributions that produced ``ids[n_prompt:]``."""
    logits = model(torch.tensor([ids[:-1]]), use_cache=False).logits[0, n_prompt - 1 :]
    return torch.log_softmax(logits.double(), dim=-1)


def pieces(tokenizer: Any, prompt_ids: list[int], new: list[int]) -> list[str]:
    """The text each generated token adds (a token that ends inside a character adds ``""``, the
    token completing it adds the whole character)."""
    out, prev = [], tokenizer.decode(prompt_ids)
    for i in range(len(new)):
        cur = tokenizer.decode(prompt_ids + new[: i + 1])
        if cur.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next byte token
            out.append("")
            continue
        out.append(cur[len(prev) :] if cur.startswith(prev) else cur)
        prev = cur
    return out


def display_units(row: Continuation) -> list[tuple[str, int, int]]:
    """``(text, first token, last token + 1)`` runs: a token whose piece is ``""`` joins the next."""
    units, start = [], 0
    for i, p in enumerate(row.pieces):
        if p:
            units.append((p, start, i + 1))
            start = i + 1
    if start < len(row.pieces):
        units.append(("\ufffd", start, len(row.pieces)))
    return units


def same_prompt(
    m: Loaded, prompt: str, recipes: Sequence[Any] = DEFAULT_RECIPES, n_tokens: int = 24, progress: bool = True
) -> SamePrompt:
    """Greedy continuations of ``prompt`` by the float model and by each recipe (weight-only,
    simulated, the recipes of :func:`qlab.quantize_model`); the model's weights are restored after."""
    recipes = _check(prompt, recipes, n_tokens)
    if getattr(m, "kind", None) != "causal-lm":
        raise ValueError(f"same_prompt needs a causal language model (kind 'causal-lm'), got kind {getattr(m, 'kind', None)!r}")
    from tqdm.auto import tqdm

    model, tok = torch_module(m), m.tokenizer
    prompt_ids = list(tok(prompt)["input_ids"])
    n_prompt = len(prompt_ids)
    f_new, f_margin = greedy(model, prompt_ids, n_tokens)
    ref = next_token_logprobs(model, prompt_ids + f_new, n_prompt)
    rows = [Continuation("f32", 32.0, f_new, pieces(tok, prompt_ids, f_new), None, [0.0] * n_tokens, f_margin)]
    snap = WeightSnapshot(model)
    try:
        for r in tqdm(recipes, desc="same prompt", disable=not progress):
            rep = quantize_model(m, r, source=snap, errors=False)
            new, _ = greedy(model, prompt_ids, n_tokens)
            lp = next_token_logprobs(model, prompt_ids + f_new, n_prompt)
            kl = (ref.exp() * (ref - lp)).sum(-1).clamp_min(0.0)
            div = next((i for i, (a, b) in enumerate(zip(new, f_new, strict=True)) if a != b), None)
            rows.append(Continuation(recipe_label(r), float(rep.bits_per_weight), new, pieces(tok, prompt_ids, new),
                                     div, [float(v) for v in kl]))  # fmt: skip
    finally:
        snap.restore(model)
    return SamePrompt(prompt, n_prompt, n_tokens, rows)


__all__ = ["DEFAULT_RECIPES", "Continuation", "SamePrompt", "display_units", "greedy", "pieces", "same_prompt"]
