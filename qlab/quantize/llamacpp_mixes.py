"""llama.cpp's named quantization mixes (``llama-quantize`` file types such as Q4_K_M).

``mix_choices`` reproduces ``llama_tensor_get_type_impl`` of llama.cpp's ``src/llama-quant.cpp``
(the K-quant mixes of Kawrakow, llama.cpp PR #1684) for dense LLaMA-like and BERT-like models
without an importance matrix; see :mod:`qlab.quantize.recipes` for the rules in words. The row-length
fallback is applied afterwards by :func:`qlab.quantize.recipes.fallback`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import formats

#: llama-quantize file types (``LLAMA_FTYPE_MOSTLY_*``) qlab can build: name -> default format
MIXES = {
    "q4_0": "q4_0", "q4_1": "q4_1", "q5_0": "q5_0", "q5_1": "q5_1", "q8_0": "q8_0",
    "q2_k": "q2_k", "q3_k_s": "q3_k", "q3_k_m": "q3_k", "q3_k_l": "q3_k",
    "q4_k_s": "q4_k", "q4_k_m": "q4_k", "q5_k_s": "q5_k", "q5_k_m": "q5_k", "q6_k": "q6_k",
    "iq4_nl": "iq4_nl", "iq4_xs": "iq4_xs", "tq1_0": "tq1_0", "tq2_0": "tq2_0",
}  # fmt: skip


def is_mix(name: str) -> bool:
    """True for a mix name that is not also a format name (``"q4_k_m"``; not ``"q4_0"``)."""
    n = name.lower()
    if n in MIXES:
        try:
            formats.get(n)
            return False  # a format name first: "q4_0" is pure Q4_0; "llama:q4_0" is the mix
        except ValueError:
            return True
    return False


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's ``use_more_bits``: the first and last eighth of the layers, every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def mix_choices(tg: Sequence[Any], ftype: str, config: Any = None) -> dict[str, tuple[str, str]]:
    """``{target name: (format, why)}`` of llama.cpp's ``ftype`` mix for the weight targets ``tg``
    (``.name``, ``.category``, ``.row_length``; in model order) of a model with ``config``
    (``num_attention_heads``, ``num_key_value_heads``, ``num_hidden_layers``). ``"f32"`` = keep."""
    if ftype not in MIXES:
        raise ValueError(f"unknown llama.cpp mix {ftype!r}; valid mixes: {', '.join(MIXES)}")
    default = MIXES[ftype]
    cats = [t.category for t in tg]
    tied = "output" not in cats  # llama.cpp assumes tied embeddings unless output.weight exists
    cfg = config
    n_head = getattr(cfg, "num_attention_heads", 1) or 1
    n_gqa = n_head // (getattr(cfg, "num_key_value_heads", None) or n_head)
    n_attn_v = cats.count("attn_v")
    n_layer = getattr(cfg, "num_hidden_layers", None) or max(cats.count("ffn_down"), 1)
    seen: dict[str, int] = {}
    index = {}  # llama.cpp's per-category counters (i_attention_wv, i_ffn_down) in layer order
    for t in tg:
        index[t.name] = seen.get(t.category, 0)
        seen[t.category] = index[t.name] + 1
    block = formats.get(default).block_size
    tag = ftype.upper()
    out: dict[str, tuple[str, str]] = {}
    for t in tg:
        cat, i, new, why = t.category, index[t.name], default, ""
        if cat in ("position_embd", "token_types"):
            out[t.name] = ("f32", f"{tag}: llama.cpp does not quantize {cat}")
            continue
        if cat == "output" or (tied and cat == "token_embd"):
            what = "output (tied token_embd)" if cat == "token_embd" else "output"
            if t.row_length % block:
                new, why = "q8_0", f"{tag}: {what} row length {t.row_length} not a multiple of {default}'s {block} -> q8_0"
            elif default != "q8_0":
                new, why = "q6_k", f"{tag}: {what} -> q6_k"
        elif cat == "token_embd":
            if ftype in ("tq1_0", "tq2_0"):
                new, why = "q4_k", f"{tag}: token_embd -> q4_k"
        elif cat == "attn_v":
            more = use_more_bits(i, n_attn_v)
            rules = {
                "q2_k": "q4_k" if n_gqa >= 4 else "q3_k",
                "q3_k_m": "q5_k" if i < 2 else "q4_k",
                "q3_k_l": "q5_k",
                "iq4_nl": "q5_k" if n_gqa >= 4 else None,
                "iq4_xs": "q5_k" if n_gqa >= 4 else None,
                "q4_k_m": "q6_k" if more else None,
                "q5_k_m": "q6_k" if more else None,
                "q4_k_s": "q5_k" if i < 4 else None,
            }
            if rules.get(ftype):
                new, why = rules[ftype], f"{tag}: attn_v of layer {i} (use_more_bits={more}, n_gqa={n_gqa}) -> {rules[ftype]}"
        elif cat == "ffn_down":
            more = use_more_bits(i, n_layer)
            rules = {
                "q2_k": "q3_k",
                "q3_k_m": "q5_k" if i < n_layer // 16 else "q4_k",
                "q3_k_l": "q5_k",
                "q4_k_m": "q6_k" if more else None,
                "iq4_nl": "q5_k" if i < n_layer // 8 else None,
                "iq4_xs": "q5_k" if i < n_layer // 8 else None,
                "q5_k_m": "q6_k" if more else None,
                "q4_k_s": "q5_k" if i < n_layer // 8 else None,
            }
            if rules.get(ftype):
                new, why = rules[ftype], f"{tag}: ffn_down of layer {i} (use_more_bits={more}) -> {rules[ftype]}"
        elif cat == "attn_output":
            rules = {"q2_k": "q3_k", "q3_k_m": "q4_k", "q3_k_l": "q5_k"}
            if ftype in rules:
                new, why = rules[ftype], f"{tag}: attn_output -> {rules[ftype]}"
        out[t.name] = (new, why)
    return out


__all__ = ["MIXES", "is_mix", "mix_choices", "use_more_bits"]
