"""``qlab.quantize_(m, RotationConfig(...))`` (qlab.quantize.rotation): validation, the float model
unchanged (a tiny random LLaMA with non-power-of-two widths and SmolLM2, against transformers' own
forward of the unrotated model), and composition with a following weight quantization (llama.cpp's
q8_0 recipe; GPTQ, whose Hessian must be that of the rotated ``down_proj`` input)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import qlab
from qlab.quantize import GPTQConfig, PTQConfig, RotationConfig, WeightOnlyConfig, quantize_
from tests.quantize._fixtures import single_thread, smol  # noqa: F401


@pytest.mark.parametrize(
    "kw,match",
    [({"kind": "givens"}, r"kind must be one of \('hadamard', 'random'\), got 'givens'"),
     ({"seed": -1}, "seed must be a non-negative int, got -1"),
     ({"seed": True}, "seed must be a non-negative int, got True"),
     ({"online": "yes"}, "online must be True or False, got 'yes'"),
     ({"heads": 1}, "heads must be True or False, got 1"),
     ({"weights": "int4"}, "weights must be None, got 'int4'"),
     ({"group_size": 32}, "group_size must be None, got 32"),
     ({"include": "model.layers.*"}, "include must be None, got 'model.layers.*'"),
     ({"weight_options": {"symmetric": False}}, "weight_options")],
)  # fmt: skip
def test_config_refusals(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RotationConfig(**kw)


def test_registered() -> None:
    assert qlab.RotationConfig is RotationConfig
    assert qlab.quantize.api.methods()["RotationConfig"] == "qlab.quantize.rotation.run_rotation"
    assert RotationConfig(kind="random", seed=3, online=False).label() == "Rotation random + heads"


def _tiny() -> torch.nn.Module:
    """A random LLaMA: hidden 48 = 12 * 4 (Paley I x Sylvester), head_dim 12, intermediate 96,
    GQA (4 heads, 2 KV heads), tied embedding, norm weights far from 1 (the folding matters)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=101, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)  # fmt: skip
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.rand_like(p) * 2 + 0.1)
    return m


def _logits(m: Any, ids: torch.Tensor) -> torch.Tensor:
    mod = m if isinstance(m, torch.nn.Module) else m.model
    with torch.no_grad():
        return mod(ids).logits.double()


@pytest.mark.parametrize("kind,online,heads", [("hadamard", True, True), ("random", False, True), ("hadamard", True, False)])
def test_tiny_logits_unchanged(kind: str, online: bool, heads: bool) -> None:
    ref_model, m = _tiny(), _tiny()
    ids = torch.randint(0, 101, (2, 24), generator=torch.Generator().manual_seed(1))
    ref = _logits(ref_model, ids)
    rep = quantize_(m, RotationConfig(kind=kind, seed=5, online=online, heads=heads))
    assert rep.extra == {"kind": kind, "seed": 5, "online": online, "heads": heads, "gqa_group": 2}
    assert len(rep.layers) == 2 * 7 + 1 and all(r.weights == "float32" for r in rep.layers)
    assert rep.layer("model.layers.0.mlp.down_proj").note == ("Q^T W H (input: online x H)" if online else "Q^T W")
    assert not torch.equal(m.model.embed_tokens.weight, ref_model.model.embed_tokens.weight)
    got = _logits(m, ids)
    assert (got - ref).abs().max().item() < 1e-5 * ref.abs().max().item()
    with pytest.raises(ValueError, match="fresh"):
        quantize_(m, RotationConfig())


def test_smollm2_logits_unchanged_then_q8_0(smol) -> None:  # noqa: F811
    """Rotation leaves SmolLM2's logits at float32 rounding; q8_0 weights afterwards stay close to the
    float model only if the online ``down_proj`` rotation survives the quantization."""
    ids = smol.tokenizer("The quick brown fox jumps over the lazy dog. Quantization of", return_tensors="pt")["input_ids"]
    ref = _logits(smol, ids)
    m = smol.fresh()
    rep = quantize_(m, RotationConfig())
    assert rep.method == "Rotation hadamard + online down_proj + heads" and len(rep.layers) == 30 * 7 + 1
    got = _logits(m, ids)
    assert (got - ref).abs().max().item() < 2e-4 * ref.abs().max().item()
    assert torch.equal(got.argmax(-1), ref.argmax(-1))
    quantize_(m, WeightOnlyConfig(recipe="q8_0", include="model.layers.*"))
    q = _logits(m, ids)
    kl = torch.nn.functional.kl_div(q.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    assert kl.mean().item() < 0.01, kl.mean().item()
    m.model.model.layers[0].mlp.down_proj._forward_pre_hooks.clear()  # without the online rotation: wrong
    bad = _logits(m, ids)
    kl_bad = torch.nn.functional.kl_div(bad.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    assert kl_bad.mean().item() > 10 * kl.mean().item()


def _down_input(m: torch.nn.Module, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """``down_proj``'s input as the weights see it (after the online rotation's pre-hook)."""
    got: list[torch.Tensor] = []
    h = m.model.layers[layer].mlp.down_proj.register_forward_pre_hook(lambda mod, a: got.append(a[0].detach()))
    with torch.no_grad():
        m(ids)
    h.remove()
    return torch.cat(got).flatten(0, -2).double()


def test_gptq_after_rotation_uses_rotated_inputs() -> None:
    """GPTQ minimises ``||X (W - Q)^T||`` over its calibration inputs: on the rotated model, with X the
    *rotated* ``down_proj`` input, its error is below round-to-nearest's on the same grid (int4 per
    channel, asymmetric)."""
    ids = torch.randint(0, 101, (8, 32), generator=torch.Generator().manual_seed(2))
    base = _tiny()
    quantize_(base, RotationConfig())
    x = [_down_input(base, ids, i) for i in range(2)]
    w = [base.model.layers[i].mlp.down_proj.weight.detach().double().clone() for i in range(2)]
    errs = {}
    for name, cfg, calib in (
        ("gptq", GPTQConfig(weights="int4", group_size=None, n_samples=8, seq_len=32, progress=False), ids),
        ("rtn", PTQConfig(weights="int4", activations=None, weight_options={"symmetric": False}, progress=False), None),
    ):
        m = _tiny()
        quantize_(m, RotationConfig())
        quantize_(m, cfg, calibration=calib)
        errs[name] = [((xi @ (m.model.layers[i].mlp.down_proj.weight.double() - wi).T) ** 2).sum().item()
                      for i, (xi, wi) in enumerate(zip(x, w, strict=True))]  # fmt: skip
    assert all(g < r for g, r in zip(errs["gptq"], errs["rtn"], strict=True)), errs
