"""Bring-your-own GGUF: a tiny LLaMA written with gguf-py (an independent writer) loads through
``qlab.models.load(path)`` with the exact dequantized weights, HF's Q/K row order, a working
tokenizer and a progress bar -- and computes the same logits as llama.cpp on the same file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qlab
from qlab.models import load

D, H, KV, FF, N_LAYER = 64, 4, 2, 128, 2
QTYPES = {"attn_q": "q8_0", "attn_k": "q8_0", "attn_v": "f16", "attn_output": "q4_0", "ffn_gate": "q8_0",
          "ffn_up": "q8_0", "ffn_down": "q4_0"}
HF = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
      "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def _byte_tokens() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = bytes_to_unicode()
    return [table[b] for b in range(256)]


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py ``LlamaModel.permute``: HF rows -> GGML's interleaved RoPE pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``(path, expected HF state dict)`` of a 2-layer LLaMA GGUF with Q8_0/Q4_0/F16/F32 tensors."""
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf", QTYPES)


def write_tiny_llama(path, qtypes):
    """Write a random 2-layer LLaMA GGUF (linear weights in ``qtypes``), return ``(path, HF state dict)``."""
    from gguf import GGMLQuantizationType, GGUFWriter

    rng = np.random.default_rng(0)
    tokens = _byte_tokens() + ["he", "<|endoftext|>"]
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(N_LAYER)
    w.add_context_length(256)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(D // H)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 1) + [3])
    w.add_token_merges(["h e"])
    w.add_bos_token_id(len(tokens) - 1)
    w.add_eos_token_id(len(tokens) - 1)

    expected: dict[str, torch.Tensor] = {}

    def put(gguf_name, hf_name, x, qtype, n_head=None):
        fmt = {"q8_0": GGMLQuantizationType.Q8_0, "q4_0": GGMLQuantizationType.Q4_0}.get(qtype)
        if qtype == "f32":
            stored, back = x, x
        elif qtype == "f16":
            stored = x.astype(np.float16)
            back = stored.astype(np.float32)
        else:
            raw = np.frombuffer(qlab.formats.get(qtype).encode(x).to_bytes(), np.uint8).reshape(x.shape[0], -1)
            stored, back = raw, qlab.roundtrip(x, qtype)
        gguf_stored = stored if n_head is None else _permute(stored, n_head)
        if fmt is None:
            w.add_tensor(gguf_name, np.ascontiguousarray(gguf_stored))
        else:
            w.add_tensor(gguf_name, np.ascontiguousarray(gguf_stored), raw_dtype=fmt)
        expected[hf_name] = torch.from_numpy(np.ascontiguousarray(back))

    def randn(*shape, scale=0.2):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    put("token_embd.weight", "model.embed_tokens.weight", randn(len(tokens), D, scale=1.0), qtypes.get("token_embd", "q8_0"))
    for i in range(N_LAYER):
        put(f"blk.{i}.attn_norm.weight", f"model.layers.{i}.input_layernorm.weight", 1 + randn(D, scale=0.1), "f32")
        put(f"blk.{i}.ffn_norm.weight", f"model.layers.{i}.post_attention_layernorm.weight", 1 + randn(D, scale=0.1), "f32")
        shapes = {"attn_q": (D, D), "attn_k": (KV * D // H, D), "attn_v": (KV * D // H, D), "attn_output": (D, D),
                  "ffn_gate": (FF, D), "ffn_up": (FF, D), "ffn_down": (D, FF)}
        for short, shape in shapes.items():
            # the Q/K permutation acts on rows and Q8_0 blocks lie along rows, so quantize-then-permute
            # stores exactly what permute-then-quantize (the converter's order) stores
            n_head = {"attn_q": H, "attn_k": KV}.get(short)
            put(f"blk.{i}.{short}.weight", f"model.layers.{i}.{HF[short]}.weight", randn(*shape), qtypes[short], n_head)
    put("output_norm.weight", "model.norm.weight", 1 + randn(D, scale=0.1), "f32")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, expected


def test_tiny_gguf_loads_exactly_with_progress(tiny, capfd):
    path, expected = tiny
    m = load(path)
    assert "dequantizing" in capfd.readouterr().err  # the progress bar of a first (uncached) load
    assert m.name == "tiny-llama" and m.kind == "causal-lm" and m.source == path.resolve()
    cfg = m.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (N_LAYER, D, H, KV)
    assert cfg.tie_word_embeddings and m.model.lm_head.weight is m.model.model.embed_tokens.weight
    sd = m.model.state_dict()
    for name, want in expected.items():
        assert torch.equal(sd[name], want), name
    assert m.tokenizer("hehe!", add_special_tokens=False)["input_ids"] == [256, 256, ord("!")]
    assert load(str(path), progress=False).model.state_dict()["model.norm.weight"].equal(expected["model.norm.weight"])


def test_tiny_gguf_logits_match_llama_cpp(tmp_path):
    """Same float32 file, same tokens: qlab's PyTorch model vs llama.cpp's CPU forward.

    All tensors and the KV cache F32, so llama.cpp does not round activations (it does for
    quantized weights and, by default, an F16 KV cache);
    a wrong Q/K permutation or RoPE layout would differ by O(10) here."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from qlab.backends.llamacpp.isolate import stream
    path, _ = write_tiny_llama(tmp_path / "tiny-f32.gguf", dict.fromkeys([*QTYPES, "token_embd"], "f32"))
    m = load(path, progress=False)
    ids = [int(i) for i in np.random.default_rng(1).integers(0, 256, 48)]
    with torch.inference_mode():
        ours = m.model(torch.tensor([ids])).logits[0].numpy()
    # F32 KV cache too (llama.cpp's default stores K and V as F16)
    # (in llama.cpp's child process: n_ctx = n_batch = 64, one thread)
    [theirs] = stream("logits", str(path), np.array([ids]), 64, threads=1, type_k=0, type_v=0)
    np.testing.assert_allclose(ours, theirs, atol=1e-4 * np.abs(theirs).max())
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


def test_only_plain_llama_takes_the_fast_path(tiny):
    """Variants this loader does not model (rope scaling, experts, partial rotary, other
    architectures) are left to transformers' generic GGUF loader."""
    import dataclasses

    from qlab.models._gguf import GGUFFile
    from qlab.models.smollm2 import supports

    f = GGUFFile.open(tiny[0])
    assert supports(f)
    for key, value in [("llama.rope.scaling.type", "yarn"), ("llama.expert_count", 8),
                       ("llama.rope.dimension_count", 8), ("general.architecture", "qwen2")]:
        assert not supports(dataclasses.replace(f, metadata={**f.metadata, key: value})), key
