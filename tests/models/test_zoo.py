"""qlab.models.load: the three zoo models and loading by path, checked against independent readers
(gguf-py's dequantizer, llama.cpp's tokenizer, transformers/sentence-transformers loaders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qlab
from qlab.models import ZOO, LoadedModel, load, minilm_dir, minilm_weights
from qlab.models._gguf import GGUFFile
from qlab.models.smollm2 import smollm2_gguf

from ._offline import no_network


def test_zoo_names_and_unknown_name():
    assert set(ZOO) == {"smollm2-135m", "minilm-l6", "digits-cnn"}
    with pytest.raises(ValueError, match="smollm2-135m, minilm-l6, digits-cnn"):
        load("gpt-17")


def test_smollm2_is_a_float32_llama_in_eval_mode(smollm2):
    m = smollm2
    assert isinstance(m, LoadedModel) and m.name == "smollm2-135m" and m.kind == "causal-lm"
    assert m.source == smollm2_gguf() and m.source.suffix == ".gguf"
    assert type(m.model).__name__ == "LlamaForCausalLM" and not m.model.training
    assert all(p.dtype == torch.float32 for p in m.model.parameters())
    cfg = m.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert m.num_parameters == 134_515_008  # tied: the 49152x576 embedding counted once
    assert m.model.lm_head.weight is m.model.model.embed_tokens.weight
    assert m.tokenizer.bos_token == "<|im_start|>" and m.tokenizer("Hello world")["input_ids"] == [19556, 905]
    assert qlab.models.load is load


def test_smollm2_reference_is_the_dequantized_q4_1_file(smollm2):
    """Honesty check: the 'float' model is the published Q4_1 file (Q8_0 embedding), dequantized.

    Compared with gguf-py's own dequantizer on the raw bytes; Q/K rows re-permuted the way
    llama.cpp's convert_hf_to_gguf.py does (``LlamaModel.permute``)."""
    from gguf import quants

    f = GGUFFile.open(smollm2_gguf())
    types = {i.type_name for n, i in f.tensors.items() if n.endswith(("attn_q.weight", "ffn_down.weight"))}
    assert types == {"q4_1"} and f.tensors["token_embd.weight"].type_name == "q8_0"
    sd = smollm2.model.state_dict()

    def gguf_py(name):
        info = f.tensors[name]
        return np.asarray(quants.dequantize(np.array(f.raw(name)), info.ggml_type), np.float32).reshape(info.shape)

    def permute(w, n_head):  # convert_hf_to_gguf.py: HF rows -> GGML rows
        return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    np.testing.assert_array_equal(sd["model.embed_tokens.weight"].numpy(), gguf_py("token_embd.weight"))
    np.testing.assert_array_equal(sd["model.layers.7.mlp.down_proj.weight"].numpy(), gguf_py("blk.7.ffn_down.weight"))
    np.testing.assert_array_equal(sd["model.norm.weight"].numpy(), gguf_py("output_norm.weight"))
    np.testing.assert_array_equal(permute(sd["model.layers.3.self_attn.q_proj.weight"].numpy(), 9), gguf_py("blk.3.attn_q.weight"))
    np.testing.assert_array_equal(permute(sd["model.layers.3.self_attn.k_proj.weight"].numpy(), 3), gguf_py("blk.3.attn_k.weight"))
    # re-quantizing to the file's own format is lossless: the grid is the published one
    w = sd["model.layers.7.mlp.down_proj.weight"].numpy()
    np.testing.assert_array_equal(qlab.roundtrip(w, "q4_1"), w)


def test_smollm2_tokenizer_matches_llama_cpp(smollm2):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    from qlab.backends.llamacpp import tokenize

    text = qlab.eval.wikitext2_test()[:30000]
    assert smollm2.tokenizer(text, add_special_tokens=False)["input_ids"] == tokenize(smollm2_gguf(), text)


def test_loads_are_independent_copies(smollm2):
    """Quantizing (here: zeroing/scaling) one loaded copy changes neither another copy nor the cache."""
    from qlab.models.zoo import _CACHE

    a = load("smollm2-135m", progress=False)
    (template,) = [entry[0] for entry in _CACHE.values() if entry[3] == smollm2_gguf()]
    before = smollm2.model.model.layers[0].self_attn.q_proj.weight.clone()
    with torch.no_grad():
        a.model.model.layers[0].self_attn.q_proj.weight.zero_()
        a.model.model.embed_tokens.weight.mul_(0.5)
    for other in (smollm2.model, template):
        assert torch.equal(other.model.layers[0].self_attn.q_proj.weight, before)
        assert not torch.equal(other.model.embed_tokens.weight, a.model.model.embed_tokens.weight)
        assert other.lm_head.weight is other.model.embed_tokens.weight
    assert a.model.lm_head.weight is a.model.model.embed_tokens.weight  # each copy keeps its own tie
    assert a.tokenizer is smollm2.tokenizer  # shared: quantization never touches a tokenizer


def test_bundled_gguf_by_path(smollm2):
    """Loading the bundled file by path gives the same model (sharing the parsed cache entry);
    parsing a new file by path, with its progress bar, is tested in test_gguf_path.py."""
    with no_network():
        m = load(str(smollm2_gguf()), progress=False)
    assert m.kind == "causal-lm" and m.name == smollm2_gguf().stem and m.model is not smollm2.model
    for (k1, v1), (k2, v2) in zip(m.model.state_dict().items(), smollm2.model.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)


def test_minilm_zoo_and_directory(minilm):
    m = minilm
    assert m.kind == "sentence-encoder" and not m.model.training
    assert m.config == {"pooling": "mean", "normalize": True, "max_seq_length": 256}
    assert m.num_parameters == 22_713_216
    w = m.model.state_dict()["encoder.layer.0.output.dense.weight"].numpy()
    np.testing.assert_array_equal(w, minilm_weights("encoder.layer.0.output.dense.weight"))
    with no_network():
        d = load(minilm_dir(), progress=False)
    assert d.kind == "sentence-encoder" and d.config == m.config and d.source == minilm_dir()
    assert torch.equal(d.model.embeddings.word_embeddings.weight, m.model.embeddings.word_embeddings.weight)


def test_bad_paths(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="only .gguf"):
        load(tmp_path / "w.bin")
    (tmp_path / "config.json").write_text('{"architectures": ["BertForMaskedLM"]}')
    with pytest.raises(ValueError, match="ForCausalLM"):
        load(tmp_path)
    (tmp_path / "x.gguf").write_bytes(b"GGML" + bytes(60))
    with pytest.raises(ValueError, match="not a GGUF"):
        load(tmp_path / "x.gguf")
