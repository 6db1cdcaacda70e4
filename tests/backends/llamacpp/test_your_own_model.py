"""Bring your own model: LLaMA, Qwen2, Qwen3 and Gemma 3 from a Hugging Face directory to llama.cpp.

For each family a tiny random model is written here (seeded; 2 layers -- Gemma 3: 6, so that its
every-6th global layer and both rope bases are used --, hidden 64, 4 query / 2 key-value heads,
intermediate 128), with SmolLM2's real 49,152-token BPE tokenizer, saved with ``save_pretrained``
into a temporary directory; no download. Weights are drawn large enough (token embedding std
2/sqrt(64)) that the logits are far from uniform, so a wrong quirk shows in the KL.

The chain: ``qlab.models.load(dir)`` -> qlab's reference run (perplexity, logits) on WikiText-2
-> ``export_gguf`` F32 -> llama.cpp (its child process, F32 KV cache) on the same tokens gives
the same perplexity (relative 1e-4) and KL < 1e-5, top-1 agreement 1 -> ``qlab.models.load(gguf)``
gives the HF model's logits -> ``quantize_`` (weight-only Q4_0; GPTQ and AWQ on Qwen3) ->
``export_gguf`` -> llama.cpp's perplexity within 1 % of qlab's simulation of the same model.
Negative controls: the same export without LLaMA's Q/K permutation, or without Gemma's norm
offset, gives llama.cpp a different model (KL > 1e-3): the comparison does see the quirks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qlab.backends.llamacpp import compare, export_gguf, tokenize
from qlab.models import load
from qlab.models.archs import ARCHS, SUPPORTED, hparams

from .conftest import DATA, raw_tensors

pytestmark = pytest.mark.slow
WINDOW, WINDOWS = 64, 2
F32_KV = {"type_k": 0, "type_v": 0}  # llama.cpp's KV cache in F32 (its default is F16)
FAMILIES = {  # arch -> (config class, model class, settings beyond the common ones)
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": True}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"tie_word_embeddings": False}),  # biases; output.weight
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 32, "tie_word_embeddings": True}),  # head_dim != 64/4
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               {"head_dim": 16, "query_pre_attn_scalar": 16, "num_hidden_layers": 6, "sliding_window": 512}),
}
COMMON = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2,
              pad_token_id=2)  # fmt: skip


def _rel(a: float, b: float) -> float:
    return abs(a - b) / b


def tiny_model(arch: str, seed: int = 0) -> Any:
    """A random ``*ForCausalLM`` of the family (weights ~ N(0, 1/fan_in), norms 1 + N(0, 0.1^2)
    -- Gemma stores the norm's w of x * (1 + w) --, biases N(0, 0.1^2))."""
    import transformers

    cfg_name, cls_name, extra = FAMILIES[arch]
    config = getattr(transformers, cfg_name)(**{**COMMON, **extra})
    model = getattr(transformers, cls_name)(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5 * (2.0 if "embed" in name else 1.0))
            elif "norm" in name:
                p.copy_((0.0 if arch == "gemma3" else 1.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="module")
def text() -> str:
    return DATA.read_text(encoding="utf-8")[:40_000]


@pytest.fixture(scope="module")
def hf_tokenizer() -> Any:
    from qlab.models.smollm2 import gguf_tokenizer, smollm2_gguf

    return gguf_tokenizer(smollm2_gguf())


@pytest.fixture(scope="module")
def family(llama_cpp: Any, hf_tokenizer: Any, text: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``family(arch)`` -> (loaded model, reference run, F32 GGUF path), made once per module."""
    from qlab.eval import reference

    root, cache = tmp_path_factory.mktemp("byom"), {}

    def make(arch: str) -> Any:
        if arch not in cache:
            d = root / arch
            tiny_model(arch).save_pretrained(d)
            hf_tokenizer.save_pretrained(d)
            m = load(d, progress=False)
            ref = reference(m, text[:20_000], window=WINDOW, windows=WINDOWS, progress=False)
            rep = export_gguf(m, root / f"{arch}.f32.gguf", "f32")
            assert set(rep.types()) == {"f32"}
            cache[arch] = (m, ref, root / f"{arch}.f32.gguf")
        return cache[arch]

    return make


@pytest.mark.parametrize("arch", SUPPORTED)
def test_float_export_matches_in_llama_cpp(arch: str, family: Any, text: str) -> None:
    import gguf

    m, ref, path = family(arch)
    assert type(m.model).__name__ == ARCHS[arch].hf_class
    r = compare(path, ref, **F32_KV)  # llama.cpp on qlab's very tokens
    assert 100 < ref.perplexity < 1e7  # far from uniform (49152) in either direction: a structured model
    assert _rel(r["perplexity"], ref.perplexity) < 1e-4, (r["perplexity"], ref.perplexity)
    assert r["kl"] < 1e-5 and r["top1"] == 1.0, r
    snippet = text[:3000]  # llama.cpp's tokenizer, from the metadata qlab wrote, agrees with transformers'
    assert tokenize(path, snippet) == m.tokenizer(snippet)["input_ids"]

    reader = gguf.GGUFReader(path)
    assert reader.fields["general.architecture"].contents() == arch
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert ("output.weight" in tensors) == (not m.model.config.tie_word_embeddings)
    assert ("blk.0.attn_q.bias" in tensors) == (arch == "qwen2")
    assert ("blk.0.attn_q_norm.weight" in tensors) == (arch in ("qwen3", "gemma3"))
    state = m.model.state_dict()
    q = state["model.layers.0.self_attn.q_proj.weight"].numpy()
    assert np.array_equal(tensors["blk.0.attn_q.weight"], q) == (arch != "llama")  # LLaMA's rows permuted
    norm = state["model.norm.weight"].numpy()
    np.testing.assert_array_equal(tensors["output_norm.weight"], norm + np.float32(1.0 if arch == "gemma3" else 0.0))


@pytest.mark.parametrize("arch", SUPPORTED)
def test_exported_gguf_loads_back(arch: str, family: Any, text: str) -> None:
    m, ref, path = family(arch)
    back = load(path, progress=False)
    assert type(back.model).__name__ == ARCHS[arch].hf_class
    with torch.inference_mode():
        ours, theirs = m.model(ref.ids[:1]).logits, back.model(ref.ids[:1]).logits
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-5)
    snippet = text[:3000]
    assert back.tokenizer(snippet)["input_ids"] == m.tokenizer(snippet)["input_ids"]
    again = path.with_suffix(".again.gguf")  # a GGUF-loaded model exports (metadata copied) to the same tensors
    export_gguf(back, again, "f32")
    assert raw_tensors(again) == raw_tensors(path)


@pytest.mark.parametrize("arch", SUPPORTED)
def test_q4_0_export_matches_simulation(arch: str, family: Any) -> None:
    from qlab.eval import compare as qlab_compare
    from qlab.quantize import WeightOnlyConfig, quantize_

    m, ref, _ = family(arch)
    q = m.fresh()
    quantize_(q, WeightOnlyConfig(recipe="q4_0"))
    sim = qlab_compare(q, ref, progress=False)
    path = family(arch)[2].with_suffix(".q4_0.gguf")
    rep = export_gguf(q, path, "q4_0")
    assert rep.types().get("q4_0", 0) >= 7 * m.model.config.num_hidden_layers
    theirs = compare(path, ref)
    assert _rel(theirs["perplexity"], sim["perplexity"]) < 0.01, (sim["perplexity"], theirs["perplexity"])
    assert sim["kl"] > 1e-3  # Q4_0 costs something: the check is not float vs float


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_gptq_and_awq_models_run_in_llama_cpp(method: str, family: Any, text: str) -> None:
    """GPTQ / AWQ (int4, groups of 32) on Qwen3, exported as F32: llama.cpp runs exactly the
    weights qlab simulated (AWQ's scales folded into the norms and projections)."""
    from qlab.eval import compare as qlab_compare
    from qlab.quantize import AWQConfig, GPTQConfig, quantize_

    m, ref, f32 = family("qwen3")
    cfg = {"gptq": GPTQConfig, "awq": AWQConfig}[method](group_size=32, n_samples=4, seq_len=64, progress=False)
    q = m.fresh()
    quantize_(q, cfg, calibration=text[20_000:])
    sim = qlab_compare(q, ref, progress=False)
    path = f32.with_suffix(f".{method}.gguf")
    export_gguf(q, path, "f32")
    theirs = compare(path, ref, **F32_KV)
    assert _rel(theirs["perplexity"], sim["perplexity"]) < 1e-3, (sim["perplexity"], theirs["perplexity"])
    assert sim["kl"] > 1e-3


def test_awq_refuses_gemma_blocks(family: Any, text: str) -> None:
    from qlab.quantize import AWQConfig, quantize_

    m, _, _ = family("gemma3")
    with pytest.raises(ValueError, match="Gemma-style blocks"):
        quantize_(m.fresh(), AWQConfig(group_size=32, n_samples=2, seq_len=32, progress=False), calibration=text)


@pytest.mark.parametrize(("arch", "quirk"), [("llama", "permute_qk"), ("gemma3", "norm_offset")])
def test_a_missing_quirk_shows(arch: str, quirk: str, family: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Negative control: export without the family's quirk and llama.cpp computes another model."""
    m, ref, f32 = family(arch)
    monkeypatch.setitem(ARCHS, arch, dataclasses.replace(ARCHS[arch], **{quirk: type(getattr(ARCHS[arch], quirk))()}))
    path = f32.with_suffix(f".no-{quirk}.gguf")
    export_gguf(m, path, "f32")
    assert compare(path, ref, **F32_KV)["kl"] > 1e-3


def test_unsupported_architectures_are_refused(hf_tokenizer: Any, tmp_path: Path) -> None:
    """A Phi-3 directory loads and runs in torch, but export_gguf names the supported families;
    so do the config checks for settings llama.cpp would compute differently."""
    from transformers import Gemma3TextConfig, LlamaConfig, Phi3Config, Phi3ForCausalLM

    d = tmp_path / "phi3"
    Phi3ForCausalLM(Phi3Config(**{**COMMON, "num_hidden_layers": 1})).save_pretrained(d)
    hf_tokenizer.save_pretrained(d)
    m = load(d, progress=False)
    from qlab.eval import perplexity

    assert 1000 < perplexity(m, DATA.read_text(encoding="utf-8")[:20_000], window=32, windows=1, progress=False)
    with pytest.raises(ValueError, match=r"model_type='phi3'.*supported: llama \(LlamaForCausalLM\), qwen2"):
        export_gguf(m, tmp_path / "phi3.gguf", "f32")
    assert not (tmp_path / "phi3.gguf").exists()
    with pytest.raises(ValueError, match="query_pre_attn_scalar=256"):
        hparams(ARCHS["gemma3"], Gemma3TextConfig(**{**COMMON, "head_dim": 16}))
    with pytest.raises(ValueError, match="rope_type"):
        hparams(ARCHS["llama"], LlamaConfig(**COMMON, rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                       "rope_theta": 1e4}))


def test_unsupported_gguf_architecture_is_refused_at_load(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "mamba.gguf"
    w = gguf.GGUFWriter(str(path), "mamba")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match=r"architecture='mamba' is not a supported architecture; supported: llama"):
        load(path, progress=False)


def test_tokenizer_pre_is_named_or_asked_for(hf_tokenizer: Any) -> None:
    """llama.cpp's pre-tokenizer name is read off the tokenizer (GPT-2's byte-level regex, Qwen2's
    split regex); another one must be named with ``tokenizer_pre`` instead of guessed."""
    import copy

    from tokenizers import pre_tokenizers

    from qlab.backends.llamacpp.source import tokenizer_kv

    kv = {k: v for k, v, _, _ in tokenizer_kv(hf_tokenizer, 49152 + 3)}
    assert kv["tokenizer.ggml.pre"] == "gpt-2" and kv["tokenizer.ggml.model"] == "gpt2"
    assert kv["tokenizer.ggml.tokens"][-3:] == ["[PAD49152]", "[PAD49153]", "[PAD49154]"]
    assert kv["tokenizer.ggml.token_type"][:2] == [3, 3] and kv["tokenizer.ggml.token_type"][100] == 1  # control, normal
    assert len(kv["tokenizer.ggml.merges"]) == 48900 and kv["tokenizer.ggml.bos_token_id"] == 1
    other = copy.deepcopy(hf_tokenizer)
    other.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(ValueError, match="pass tokenizer_pre="):
        tokenizer_kv(other, 49152)
    assert {k: v for k, v, _, _ in tokenizer_kv(other, 49152, "llama-bpe")}["tokenizer.ggml.pre"] == "llama-bpe"
    with pytest.raises(ValueError, match="has 49152 tokens, the model's embedding 100 rows"):
        tokenizer_kv(hf_tokenizer, 100)
