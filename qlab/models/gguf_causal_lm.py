"""Qwen2, Qwen3 and Gemma 3 GGUF files as float32 transformers models, with qlab's own reader.

The inverse of what ``convert_hf_to_gguf.py`` (and :func:`qlab.backends.llamacpp.export_gguf`)
writes for these families (:mod:`.archs`): ``<arch>.*`` metadata -> the transformers config,
gguf-py's ``TensorNameMap`` names -> parameter names, Gemma's stored ``1 + w`` norms -> ``w``.
No Q/K un-permutation: these families use GGML's NEOX rope, transformers' own layout. LLaMA has
its own loader (:mod:`.smollm2`).

transformers' generic GGUF loader reads these files too, but parses the file twice with
gguf-py (seconds for a 49k-token vocabulary) and, for Gemma 3, leaves ``query_pre_attn_scalar``
at its default of 256 where llama.cpp scales attention by ``1/sqrt(head_dim)`` -- wrong logits for
any other head size. Files this loader does not model (rope scaling, experts, other keys of the
attention shape) are left to transformers' loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._gguf import GGUFFile
from .archs import ARCHS

_FAMILIES = ("qwen2", "qwen3", "gemma3")


def supports(gguf: GGUFFile) -> bool:
    """True for a plain Qwen2 / Qwen3 / Gemma 3 file (no rope scaling, experts, partial rotary)."""
    a, md = gguf.architecture, gguf.metadata
    if a not in _FAMILIES:
        return False
    sizes = ("block_count", "embedding_length", "feed_forward_length", "attention.head_count")
    if not all(isinstance(md.get(f"{a}.{k}"), int) for k in sizes):
        return False
    if md.get(f"{a}.rope.scaling.type") not in (None, "none") or md.get(f"{a}.expert_count"):
        return False
    hd = md.get(f"{a}.attention.key_length", md[f"{a}.embedding_length"] // md[f"{a}.attention.head_count"])
    return md.get(f"{a}.attention.value_length", hd) == hd and md.get(f"{a}.rope.dimension_count", hd) == hd


def config_of(gguf: GGUFFile) -> Any:
    """The transformers config of a supported file (see :func:`supports`)."""
    from transformers import Gemma3TextConfig, Qwen2Config, Qwen3Config

    a, md = gguf.architecture, gguf.metadata
    n_head = md[f"{a}.attention.head_count"]
    hd = md.get(f"{a}.attention.key_length", md[f"{a}.embedding_length"] // n_head)
    theta = float(md.get(f"{a}.rope.freq_base", 1e6 if a == "gemma3" else 10000.0))
    common = dict(
        vocab_size=int(md.get(f"{a}.vocab_size") or md["tokenizer.ggml.tokens"]),
        hidden_size=md[f"{a}.embedding_length"],
        intermediate_size=md[f"{a}.feed_forward_length"],
        num_hidden_layers=md[f"{a}.block_count"],
        num_attention_heads=n_head,
        num_key_value_heads=md.get(f"{a}.attention.head_count_kv", n_head),
        max_position_embeddings=md.get(f"{a}.context_length", 2048),
        rms_norm_eps=md[f"{a}.attention.layer_norm_rms_epsilon"],
        tie_word_embeddings="output.weight" not in gguf.tensors,
        bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=md.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=md.get("tokenizer.ggml.padding_token_id"),
    )
    rope = {"rope_type": "default", "rope_theta": theta}
    if a == "qwen2":
        return Qwen2Config(**common, rope_parameters=rope)
    if a == "qwen3":
        return Qwen3Config(**common, head_dim=hd, rope_parameters=rope)
    n = common["num_hidden_layers"]  # llama.cpp's Gemma 3: every 6th layer global, rope 10000 on the others
    return Gemma3TextConfig(
        **common, head_dim=hd, query_pre_attn_scalar=hd, sliding_window=md.get(f"{a}.attention.sliding_window", 4096),
        layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n)],
        rope_parameters={"full_attention": rope, "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
    )


def build(path: str | Path) -> torch.nn.Module:
    """Parse and dequantize a supported file into its ``*ForCausalLM`` (float32, eval mode)."""
    import gguf as gguf_py
    from transformers import AutoModelForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights

    path = Path(path)
    f = GGUFFile.open(path)
    if not supports(f):
        raise ValueError(f"{path}: general.architecture={f.architecture!r} with these settings is not read by "
                         f"qlab's loader (plain {', '.join(_FAMILIES)} only)")
    config = config_of(f)
    with no_init_weights():  # every parameter is overwritten below
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    arch_id = next(k for k, v in gguf_py.MODEL_ARCH_NAMES.items() if v == f.architecture)
    tmap = gguf_py.get_tensor_name_map(arch_id, config.num_hidden_layers)
    offset = ARCHS[f.architecture].norm_offset
    state: dict[str, torch.Tensor] = {}
    for hf in model.state_dict():
        base, _, suffix = hf.rpartition(".")
        name = f"{tmap.get_name(base)}.{suffix}"
        if name not in f.tensors:
            continue
        w = np.asarray(f.tensor(name), dtype=np.float32)
        if offset and name.endswith("norm.weight"):  # GGUF stores 1 + w (Gemma's x * (1 + w))
            w = w - np.float32(offset)
        state[hf] = torch.from_numpy(np.ascontiguousarray(w))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    used = {f"{tmap.get_name(h.rpartition('.')[0])}.{h.rpartition('.')[2]}" for h in state}
    extra = sorted(set(f.tensors) - used)
    if missing or unexpected or extra:
        raise ValueError(f"{path}: parameters without a tensor {missing[:5]}, tensors without a parameter {extra[:5]}")
    model.tie_weights()
    return model.eval()


__all__ = ["build", "config_of", "supports"]
