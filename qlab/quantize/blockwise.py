"""Sequential block-by-block calibration of a decoder-only LLM, shared by GPTQ and AWQ.

The reference implementations (GPTQ: ``IST-DASLab/gptq`` ``llama_sequential``; AWQ:
``mit-han-lab/llm-awq`` ``run_awq``) never run the whole model on the calibration set at once.
They catch the input of the first decoder block, then, one block at a time:

1. run the block on every calibration window with forward pre-hooks on its ``nn.Linear`` layers
   that accumulate what the method needs about each layer's input ``X`` (``tokens x in``): the
   Gram matrix ``X^T X / n`` (GPTQ's Hessian up to a factor 2, and the quadratic form of AWQ's
   output-error objective) and the per-channel mean ``|x|`` (AWQ's activation statistic);
2. quantize the block's layers (the method's own step);
3. feed the block's outputs to the next block: GPTQ re-runs the *quantized* block (so later
   blocks calibrate on the inputs they will really see), AWQ keeps the float outputs of step 1,
   as both AWQ references do.

Linears that read the same tensor (``q/k/v_proj``, ``gate/up_proj``) share one statistics object:
the Gram matrix is computed once per distinct input, which is also what lets GPTQ quantize
``q``, ``k`` and ``v`` as one stacked matrix (GPTQ treats rows independently given ``H``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.calibration import check_token_ids
from ..core.model import ModelLike
from .recipes import torch_module

_BLOCKS = re.compile(r"(?:.*\.)?(?:layers|h|blocks)")


class _Caught(Exception):
    """Raised by the hook on the first block to stop the model's forward there."""


@dataclass
class InputStats:
    """Running statistics of one Linear input ``X`` (rows = tokens): ``gram = X^T X / n`` in
    float64 (sums of ~10^4 products), ``abs_mean = mean |x|`` per channel, ``n`` tokens."""

    features: int
    n: int = 0
    gram_sum: torch.Tensor = field(default=None)  # type: ignore[assignment]
    abs_sum: torch.Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.gram_sum = torch.zeros(self.features, self.features, dtype=torch.float64)
        self.abs_sum = torch.zeros(self.features, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        if not bool(torch.isfinite(x).all()):
            raise ValueError("calibration activations contain NaN/Inf values; they cannot be calibrated on")
        self.gram_sum += (x.T @ x).double()  # float32 GEMM per batch, summed in float64
        self.abs_sum += x.abs().sum(0).double()
        self.n += x.shape[0]

    @property
    def gram(self) -> torch.Tensor:
        """``X^T X / n`` (float32)."""
        return (self.gram_sum / max(self.n, 1)).float()

    @property
    def abs_mean(self) -> torch.Tensor:
        """Mean ``|x|`` per input channel (float32)."""
        return (self.abs_sum / max(self.n, 1)).float()


def decoder_blocks(model: ModelLike) -> tuple[str, nn.ModuleList]:
    """``(name, blocks)`` of a decoder-only LLM (``model.layers`` of a ``LlamaForCausalLM``...).

    A model without one ``ModuleList`` of transformer blocks, or without a causal-LM head (an
    image classifier, a sentence encoder), raises ``ValueError``.
    """
    kind = getattr(model, "kind", None)
    mod = torch_module(model)
    if kind is not None and kind != "causal-lm":
        raise ValueError(f"GPTQ/AWQ calibrate decoder-only LLMs block by block; {getattr(model, 'name', kind)} is a {kind} model")
    found = [(n, m) for n, m in mod.named_modules() if isinstance(m, nn.ModuleList) and _BLOCKS.fullmatch(n) and len(m)]
    if len(found) != 1 or not hasattr(mod, "lm_head"):
        raise ValueError(
            f"{type(mod).__name__} is not a decoder-only LLM with one list of transformer blocks and an "
            f"lm_head (found block lists: {[n for n, _ in found]}); GPTQ/AWQ need a causal language model"
        )
    return found[0]


def calibration_ids(model: ModelLike, calibration: Any, n_samples: int, seq_len: int) -> torch.Tensor:
    """Token ids ``(windows, seq_len)``: the first ``n_samples`` non-overlapping windows of the
    calibration text (no BOS, as the perplexity protocol), or a given id tensor ``(n, L)``."""
    if calibration is None:
        raise ValueError(
            "GPTQ/AWQ need calibration text, e.g. calibration=qlab.eval.calibration_text() "
            "(never the evaluation text)"
        )
    if isinstance(calibration, torch.Tensor):
        if calibration.ndim != 2 or calibration.dtype not in (torch.int64, torch.int32) or calibration.numel() == 0:
            raise ValueError(f"calibration ids must be a non-empty int tensor (windows, seq_len), got {tuple(calibration.shape)} {calibration.dtype}")
        check_token_ids(calibration, model, "calibration ids")
        return calibration[:n_samples].long()
    if not isinstance(calibration, str):
        raise ValueError(f"calibration must be text (str) or token ids (windows, seq_len); got {type(calibration).__name__}")
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError("text calibration needs a model with a tokenizer (pass a qlab.models.load() result)")
    ids = tok(calibration, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    windows = min(n_samples, ids.numel() // seq_len)
    if windows == 0:
        raise ValueError(f"calibration text has {ids.numel()} tokens, fewer than one window of seq_len={seq_len}")
    return ids[: windows * seq_len].view(windows, seq_len)


def first_block_inputs(model: ModelLike, ids: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """``(hidden_states, kwargs)`` the first block receives for each batch of windows (the
    model's own embedding, rotary tables and mask; its forward is stopped at block 0)."""
    mod = torch_module(model)
    _, blocks = decoder_blocks(model)
    caught: list[tuple[torch.Tensor, dict[str, Any]]] = []

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        h = args[0] if args else kwargs.pop("hidden_states")
        kw = {k: v for k, v in kwargs.items() if k not in ("past_key_values", "past_key_value", "use_cache")}
        caught.append((h.detach(), kw))
        raise _Caught

    handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            for b in ids.split(batch_size):
                try:
                    mod(input_ids=b, use_cache=False)
                except _Caught:
                    pass
    finally:
        handle.remove()
    return caught


def run_block(block: nn.Module, inputs: list[tuple[torch.Tensor, dict[str, Any]]]) -> list[tuple[torch.Tensor, dict[str, Any]]]:
    """The block's outputs for every batch (kwargs passed on unchanged)."""
    out = []
    with torch.inference_mode():
        for h, kw in inputs:
            y = block(h, **kw)
            out.append((y[0] if isinstance(y, tuple) else y, kw))
    return out


def linears(block: nn.Module, select: Callable[[str], bool] | None = None) -> dict[str, nn.Linear]:
    """The block's ``nn.Linear`` layers by their name inside the block (``self_attn.q_proj``...)."""
    return {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear) and (select is None or select(n))}


def collect(block: nn.Module, layers: dict[str, nn.Linear], inputs: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[dict[str, InputStats], list[tuple[torch.Tensor, dict[str, Any]]]]:
    """Run ``block`` on every batch with input statistics hooks on ``layers``; return
    ``({layer name: InputStats}, block outputs)``. Layers fed the same tensor share one object."""
    stats: dict[str, InputStats] = {}
    # id -> (tensor, stats): holding the tensor keeps its memory from being reused by a later
    # input of the same batch, so ``is`` identifies the very same tensor
    seen: dict[int, tuple[torch.Tensor, InputStats]] = {}
    handles = []

    def make(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            prev = seen.get(id(x))
            if prev is not None and prev[0] is x:  # a sibling already counted this tensor in this batch
                stats.setdefault(name, prev[1])
                return
            st = stats.setdefault(name, InputStats(x.shape[-1]))
            st.add(x)
            seen[id(x)] = (x, st)

        return hook

    for n, m in layers.items():
        handles.append(m.register_forward_pre_hook(make(n)))
    out = []
    try:
        with torch.inference_mode():
            for h, kw in inputs:
                seen.clear()
                y = block(h, **kw)
                out.append((y[0] if isinstance(y, tuple) else y, kw))
    finally:
        for hd in handles:
            hd.remove()
    missing = [n for n in layers if n not in stats]
    if missing:
        raise ValueError(f"layer(s) {missing} never ran during calibration; exclude them")
    return stats, out


def sibling_groups(stats: dict[str, InputStats]) -> Iterator[list[str]]:
    """Names of layers that share one input (in block order)."""
    groups: dict[int, list[str]] = {}
    for n, st in stats.items():
        groups.setdefault(id(st), []).append(n)
    yield from groups.values()


__all__ = [
    "InputStats", "decoder_blocks", "calibration_ids", "first_block_inputs", "run_block", "linears", "collect",
    "sibling_groups",
]  # fmt: skip
