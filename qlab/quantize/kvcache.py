"""Simulated KV-cache quantization in a LLaMA-style model (transformers), any qlab format.

The cache holds each layer's keys *after* RoPE and its values, ``(batch, kv_heads, tokens,
head_dim)``; attention reads them back. :func:`quantize_kv` installs an attention function
(``transformers.AttentionInterface``, registered as ``"qlab_kv"``, masks as ``sdpa``) that
replaces K and V by ``decode(encode(.))`` before the (unchanged) SDPA attention, so every query
sees quantized keys and values, as with a quantized cache. Granularities (what one scale covers):

* ``"token"``: one token's K (or V) over all KV heads (``kv_heads * head_dim`` values);
* ``"head"``: one token, one head (``head_dim`` values);
* ``"block32"``: 32 consecutive values of a head (llama.cpp's ``q8_0``/``q4_0`` cache blocks;
  GGML block formats always use their own blocks);
* ``"channel"``: one channel of one head over all tokens of the window (KIVI's keys, Liu et al.,
  2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache", arXiv:2402.02750, which
  groups tokens in chunks; here the whole window shares the scale -- a lower bound on its error).

``rotate=True`` multiplies queries and keys of every head by the same orthogonal Hadamard
``H_d / sqrt(d)`` before K is quantized (``(q H)(k H)^T = q k^T``), as llama.cpp does for quantized
caches and QuaRot for K: outlier channels of K are spread over the head. Bytes per token
(:func:`bytes_per_token`): the encoded size of a window's K and V over all layers, divided by
its tokens (codes, scales and zero-points; per-channel scales amortized over the window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import formats
from ..core.model import ModelLike, torch_module
from .recipes import Spec

GRANULARITIES = ("token", "head", "block32", "channel")
NAME = "qlab_kv"


@dataclass(frozen=True)
class KVSpec:
    """Format of K or V (``None``: float) and its scale granularity."""

    fmt: str | None
    granularity: str = "head"

    def __post_init__(self) -> None:
        if self.fmt is not None:
            formats.get(self.fmt)  # unknown names raise ValueError listing the formats
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")


def _rows(x: torch.Tensor, granularity: str) -> torch.Tensor:
    b, h, s, d = x.shape
    if granularity == "token":
        return x.permute(0, 2, 1, 3).reshape(b * s, h * d)
    if granularity == "channel":
        return x.transpose(-1, -2).reshape(b * h * d, s)
    return x.reshape(b * h * s, d)


def _unrows(r: torch.Tensor, shape: torch.Size, granularity: str) -> torch.Tensor:
    b, h, s, d = shape
    if granularity == "token":
        return r.reshape(b, s, h, d).permute(0, 2, 1, 3)
    if granularity == "channel":
        return r.reshape(b, h, d, s).transpose(-1, -2)
    return r.reshape(b, h, s, d)


def _options(spec: KVSpec) -> dict[str, Any]:
    fmt = formats.get(str(spec.fmt))
    if fmt.family != "integer":
        return {}
    if spec.granularity == "block32":
        return {"granularity": "group", "group_size": 32, "symmetric": False}
    return {"granularity": "channel", "symmetric": False}


def encode(x: torch.Tensor, spec: KVSpec) -> tuple[torch.Tensor, int]:
    """``(decode(encode(x)), nbytes)`` of a K or V tensor ``(batch, heads, tokens, head_dim)``."""
    if x.ndim != 4:
        raise ValueError(f"K/V must be (batch, heads, tokens, head_dim), got shape {tuple(x.shape)}")
    if spec.fmt is None:
        return x, 2 * x.numel()  # float16 cache
    rows = _rows(x.detach().float(), spec.granularity).contiguous().numpy()
    sp = Spec(str(spec.fmt), _options(spec))
    fmt = formats.get(sp)
    enc = fmt.encode(rows, **sp.options)
    y = torch.from_numpy(np.asarray(fmt.decode(enc), dtype=np.float32)).reshape(rows.shape)
    return _unrows(y, x.shape, spec.granularity).to(x.dtype), int(enc.nbytes)


def _attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: torch.Tensor | None, **kwargs: Any) -> Any:  # fmt: skip
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    st = getattr(module, "_qlab_kv", None)
    if st is not None:
        if st["rotate"] is not None:
            h = st["rotate"].to(query.dtype)
            query, key = query @ h, key @ h
        key, kb = encode(key, st["k"])
        value, vb = encode(value, st["v"])
        st["bytes"] += kb + vb
        st["tokens"] += key.shape[0] * key.shape[2]
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, _attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def quantize_kv(model: ModelLike, k: KVSpec, v: KVSpec, rotate: bool = False) -> list[dict[str, Any]]:
    """Quantize the KV cache of every attention layer of ``model`` (in place; see the module
    docstring). Returns the per-layer state (``bytes``/``tokens`` accumulate as the model runs)."""
    if not isinstance(k, KVSpec) or not isinstance(v, KVSpec):
        raise TypeError(f"k and v must be KVSpec, got {type(k).__name__} and {type(v).__name__}")
    mod = torch_module(model)
    attns = [m for m in mod.modules() if hasattr(m, "k_proj") and hasattr(m, "head_dim")]
    if not attns:
        raise ValueError(f"{type(mod).__name__} has no LLaMA-style attention (k_proj, head_dim) to hook")
    _register()
    from .rotation import orthogonal

    h = orthogonal(int(attns[0].head_dim)).float() if rotate else None
    states = []
    for a in attns:
        a._qlab_kv = {"k": k, "v": v, "rotate": h, "bytes": 0, "tokens": 0}
        states.append(a._qlab_kv)
    mod.config._attn_implementation = NAME
    return states


def bytes_per_token(config: Any, k: KVSpec, v: KVSpec, window: int = 512) -> float:
    """Cache bytes per token of a ``window``-token sequence: K and V, every layer (see module docstring)."""
    shape = (1, config.num_key_value_heads, window, config.hidden_size // config.num_attention_heads)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    per_layer = encode(x, k)[1] + encode(x, v)[1]
    return per_layer * config.num_hidden_layers / window


__all__ = ["GRANULARITIES", "KVSpec", "encode", "quantize_kv", "bytes_per_token"]
