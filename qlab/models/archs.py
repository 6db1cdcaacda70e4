"""The causal-LM architectures qlab carries from Hugging Face / GGUF to llama.cpp and back.

One row per family: the GGUF (llama.cpp) architecture name, the transformers class and
``config.model_type``, and the conventions that differ between the two worlds. The reference
for every entry is llama.cpp's converter ``convert_hf_to_gguf.py`` (classes ``LlamaModel``,
``Qwen2Model``, ``Qwen3Model``, ``Gemma3Model``) and its loader ``src/llama-model.cpp``:

* **RoPE layout**: LLaMA's GGML graph rotates adjacent pairs (``LLAMA_ROPE_TYPE_NORM``), so the
  converter permutes each head's Q/K rows (``LlamaModel.permute``); Qwen2/Qwen3/Gemma3 use
  ``LLAMA_ROPE_TYPE_NEOX`` (rotate halves, as transformers does): no permutation.
* **norm offset**: Gemma's RMSNorm computes ``x * (1 + w)`` and transformers stores ``w``;
  GGUF stores ``1 + w`` (``Gemma3Model.modify_tensors`` adds 1 to every ``*norm.weight``,
  q_norm/k_norm included).
* **embedding scale**: Gemma multiplies the token embedding by ``sqrt(hidden_size)``; both
  transformers (``Gemma3TextScaledWordEmbedding``) and llama.cpp's graph do it themselves, so
  the stored matrix is the same and nothing is written.
* **tied output**: a tied ``lm_head`` has no ``output.weight`` tensor; llama.cpp falls back to
  ``token_embd.weight``.
* Qwen2's q/k/v biases (``attn_q.bias`` ...), Qwen3/Gemma3's per-head ``q_norm``/``k_norm``
  (``attn_q_norm``/``attn_k_norm``) are ordinary tensors of gguf-py's ``TensorNameMap``.

:func:`check_config` refuses the settings llama.cpp's graph for the family would compute
differently (it would load the file and give other logits without a word).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Arch:
    """One supported family (see the module docstring for the conventions)."""

    gguf: str  # general.architecture
    hf_class: str  # transformers class written in config.json "architectures"
    model_types: tuple[str, ...]  # transformers config.model_type values
    permute_qk: bool  # LLaMA's Q/K row permutation (GGML NORM rope) -- else NEOX, no permutation
    norm_offset: float  # added to every *norm.weight on export (subtracted on load)
    head_dim_keys: bool  # write attention.key_length / value_length (explicit head_dim)


ARCHS: dict[str, Arch] = {
    "llama": Arch("llama", "LlamaForCausalLM", ("llama",), True, 0.0, False),
    "qwen2": Arch("qwen2", "Qwen2ForCausalLM", ("qwen2",), False, 0.0, False),
    "qwen3": Arch("qwen3", "Qwen3ForCausalLM", ("qwen3",), False, 0.0, True),
    "gemma3": Arch("gemma3", "Gemma3ForCausalLM", ("gemma3_text", "gemma3"), False, 1.0, True),
}
SUPPORTED = tuple(ARCHS)


def _supported_text() -> str:
    return ", ".join(f"{a.gguf} ({a.hf_class})" for a in ARCHS.values())


def arch_by_gguf(name: Any, what: str = "general.architecture") -> Arch:
    """The row of a GGUF architecture name; ValueError naming the supported ones otherwise."""
    if name not in ARCHS:
        raise ValueError(f"{what}={name!r} is not a supported architecture; supported: {_supported_text()}")
    return ARCHS[name]


def arch_of_model(model: Any) -> Arch:
    """The row of a transformers causal LM (by ``config.model_type``); ValueError otherwise."""
    mtype = getattr(getattr(model, "config", None), "model_type", None)
    for a in ARCHS.values():
        if mtype in a.model_types:
            return a
    raise ValueError(f"model_type={mtype!r} ({type(model).__name__}) is not a supported architecture; "
                     f"supported: {_supported_text()}")


def _rope(config: Any, layer_type: str | None = None) -> dict[str, Any]:
    rp = getattr(config, "rope_parameters", None) or {}
    if layer_type is not None and layer_type in rp:
        rp = rp[layer_type]
    if not rp and getattr(config, "rope_theta", None) is not None:  # transformers < 5
        rp = {"rope_type": "default", "rope_theta": config.rope_theta}
    return dict(rp)


def head_dim(config: Any) -> int:
    """The attention head size (explicit ``head_dim`` or hidden / heads)."""
    hd = getattr(config, "head_dim", None)
    return int(hd) if hd else int(config.hidden_size) // int(config.num_attention_heads)


def check_config(arch: Arch, config: Any) -> None:
    """ValueError naming the setting when llama.cpp's graph for ``arch`` would compute something
    else than transformers with ``config`` (rope scaling, biases llama.cpp does not read, Gemma's
    attention scale and sliding-window layout...)."""

    def bad(setting: str, value: Any, valid: str) -> ValueError:
        return ValueError(f"{arch.hf_class}: config {setting}={value!r} is not exported to llama.cpp ({valid})")

    layer_types = [None] if arch.gguf != "gemma3" else ["full_attention", "sliding_attention"]
    for lt in layer_types:
        rp = _rope(config, lt)
        if rp.get("rope_type", "default") != "default":
            raise bad("rope_parameters.rope_type", rp.get("rope_type"), "only unscaled rope: 'default'")
        if getattr(config, "partial_rotary_factor", None) not in (None, 1.0):
            raise bad("partial_rotary_factor", config.partial_rotary_factor, "full rotary only")
    if arch.gguf == "llama":
        for flag in ("attention_bias", "mlp_bias"):
            if getattr(config, flag, False):
                raise bad(flag, True, "llama.cpp's LLaMA graph reads no biases")
    if arch.gguf == "qwen2" and getattr(config, "use_sliding_window", False):
        raise bad("use_sliding_window", True, "llama.cpp's qwen2 graph has no sliding window")
    if arch.gguf == "gemma3":
        hd = head_dim(config)
        if getattr(config, "query_pre_attn_scalar", hd) != hd:
            raise bad("query_pre_attn_scalar", config.query_pre_attn_scalar, f"llama.cpp scales by head_dim={hd}")
        for cap in ("attn_logit_softcapping", "final_logit_softcapping"):
            if getattr(config, cap, None) is not None:
                raise bad(cap, getattr(config, cap), "Gemma 3 in llama.cpp has no soft-capping")
        pattern = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(config.num_hidden_layers)]
        if list(getattr(config, "layer_types", pattern)) != pattern:
            raise bad("layer_types", config.layer_types, "llama.cpp: every 6th layer global (set_swa_pattern(6))")
        local = _rope(config, "sliding_attention").get("rope_theta", 10000.0)
        if float(local) != 10000.0:
            raise bad("sliding rope_theta", local, "llama.cpp's Gemma 3 uses 10000 on sliding layers")
        if getattr(config, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
            raise bad("hidden_activation", config.hidden_activation, "llama.cpp uses tanh-approximated GELU")


def hparams(arch: Arch, config: Any) -> list[tuple[str, Any, str]]:
    """``(key, value, kind)`` of the ``<arch>.*`` GGUF hyper-parameters for ``config`` (kind: "u32"
    or "f32"), the keys ``convert_hf_to_gguf.py`` writes for the family (after :func:`check_config`)."""
    check_config(arch, config)
    a = arch.gguf
    hd = head_dim(config)
    theta = _rope(config, "full_attention" if a == "gemma3" else None).get("rope_theta", 10000.0)
    out: list[tuple[str, Any, str]] = [
        (f"{a}.context_length", int(config.max_position_embeddings), "u32"),
        (f"{a}.embedding_length", int(config.hidden_size), "u32"),
        (f"{a}.block_count", int(config.num_hidden_layers), "u32"),
        (f"{a}.feed_forward_length", int(config.intermediate_size), "u32"),
        (f"{a}.attention.head_count", int(config.num_attention_heads), "u32"),
        (f"{a}.attention.head_count_kv", int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads), "u32"),
        (f"{a}.rope.freq_base", float(theta), "f32"),
        (f"{a}.attention.layer_norm_rms_epsilon", float(config.rms_norm_eps), "f32"),
    ]
    if a == "llama":
        out += [(f"{a}.vocab_size", int(config.vocab_size), "u32"), (f"{a}.rope.dimension_count", hd, "u32")]
    if arch.head_dim_keys or hd != int(config.hidden_size) // int(config.num_attention_heads):
        out += [(f"{a}.attention.key_length", hd, "u32"), (f"{a}.attention.value_length", hd, "u32")]
    if a == "gemma3":
        out.append((f"{a}.attention.sliding_window", int(config.sliding_window), "u32"))
    return out


def is_norm(gguf_name: str) -> bool:
    """A norm weight of a GGUF file (``attn_norm``, ``ffn_norm``, ``attn_q_norm``, ``output_norm`` ...)."""
    return gguf_name.endswith("norm.weight")


__all__ = ["ARCHS", "Arch", "SUPPORTED", "arch_by_gguf", "arch_of_model", "check_config", "head_dim", "hparams", "is_norm"]
