"""Recipes against llama.cpp itself: the per-tensor types ``llama_model_quantize`` picks (dry run of
the llama.cpp bundled with llama-cpp-python, on the SmolLM2 GGUF) must equal ``resolve_recipe``'s."""
# ruff: noqa: F811  (test arguments named after the imported fixtures)

from __future__ import annotations

import re

import pytest
import torch

from qlab.quantize import quantize_model, recipes
from qlab.quantize.recipes import Spec, resolve_recipe
from tests.quantize._fixtures import single_thread, smol  # noqa: F401  (pytest fixtures)

_LINE = re.compile(r"\]\s+(\S+)\s+- \[[^\]]*\], type =\s+(\w+),[^(\n]*(?:\((\w+)\))?")


def llama_cpp_types(gguf_path, ftype: str) -> dict[str, str]:
    """{tensor name: target type} from llama.cpp's own quantizer (dry run: nothing is written),
    run in a child process."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from qlab.backends.llamacpp.isolate import call

    ftype_id = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype.upper()}")
    # allow_requantize: the published file is Q4_1 already
    rc, lines = call("model_quantize", str(gguf_path), "unused.gguf", ftype_id, nthread=1,
                     allow_requantize=True, dry_run=True)
    assert rc == 0
    lines = [line + "\n" for line in lines]
    out = {}
    for m in _LINE.finditer("".join(lines)):
        name, old, new = m.groups()
        out[name] = (new or old).lower()
    assert len(out) > 200, "could not parse llama.cpp's dry-run log"
    return out


MIXES = ["q4_k_m", "q4_k_s", "q5_k_m", "q5_k_s", "q3_k_s", "q3_k_m", "q3_k_l", "q2_k", "q6_k",
         "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "iq4_nl", "iq4_xs", "tq1_0", "tq2_0"]  # fmt: skip


@pytest.mark.parametrize("mix", MIXES)
def test_mix_matches_llama_cpp(smol, mix):
    ref = llama_cpp_types(smol.source, mix)
    got = resolve_recipe(smol, f"llama:{mix}")
    for name, choice in got.items():
        g = recipes.gguf_name(name)
        used = {"fp16": "f16"}.get(choice.used, choice.used)
        assert ref[g] == used, f"{mix}: {name} ({g}) llama.cpp {ref[g]}, qlab {used} ({choice.reason})"
    assert sorted(recipes.gguf_name(n) for n in got) == sorted(k for k in ref if not k.endswith("norm.weight"))


def test_fallback_reported_for_576_wide_rows(smol):
    got = resolve_recipe(smol, "q4_k")
    assert len(got) == 211  # 30 blocks x 7 + the embedding, which lm_head shares (counted once)
    for name, (req, used, reason) in got.items():
        assert req == "q4_k"
        if name.endswith("down_proj"):  # rows of 1536 = 6 super-blocks
            assert used == "q4_k" and reason == ""
        else:  # rows of 576 = 2.25 super-blocks: llama.cpp's tensor_type_fallback
            assert used == "q5_0" and "576" in reason and "q5_0" in reason, (name, reason)
    assert "tied with lm_head" in got["model.embed_tokens"].reason
    # the report of the quantized model carries the same rows (one block is enough to check)
    rep = quantize_model(smol, "q4_k", include="model.layers.0.*")
    fell = {r.name: r.used for r in rep.fallbacks}
    assert fell == {f"model.layers.0.{n}": "q5_0" for n in ("self_attn.q_proj", "self_attn.k_proj",
                    "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj")}  # fmt: skip


def test_mapping_first_match_wins_include_exclude(smol):
    rec = {"*attn_v*": "q8_0", "blk.0.*": ("int4", {"granularity": "group", "group_size": 64}), "*mlp*": "nf4"}
    got = resolve_recipe(smol, rec, exclude="*layers.29.*")
    assert got["model.layers.0.self_attn.v_proj"].used == "q8_0"  # GGUF name matched, first pattern wins
    q0 = got["model.layers.0.self_attn.q_proj"].used
    assert q0 == "int4" and q0.options == {"granularity": "group", "group_size": 64}
    assert got["model.layers.3.mlp.up_proj"].used == "nf4"
    assert got["model.layers.3.self_attn.q_proj"] == ("f32", "f32", "no recipe pattern matches")
    assert got["model.layers.29.mlp.up_proj"].used == "f32" and got["model.layers.29.mlp.up_proj"].reason == "excluded"
    only = resolve_recipe(smol, "q8_0", include=["lm_head"])  # an alias selects the shared tensor
    assert [n for n, c in only.items() if c.used != "f32"] == ["model.embed_tokens"]


def test_non_ggml_fallback_and_bad_values(smol):
    got = resolve_recipe(smol, ("int4", {"granularity": "group", "group_size": 128}))
    c = got["model.layers.0.self_attn.q_proj"]  # 576 = 4.5 groups of 128: no llama.cpp rule, f16
    assert c.used == "fp16" and "576" in c.reason and "fp16" in c.reason
    assert got["model.layers.0.mlp.down_proj"].used == "int4"  # 1536 = 12 groups
    with pytest.raises(ValueError, match="unknown format"):
        resolve_recipe(smol, "q9_9")
    with pytest.raises(ValueError, match="group_size"):
        resolve_recipe(smol, {"*": ("int4", {"group_size": 0, "granularity": "group"})})
    with pytest.raises(ValueError, match="mix"):
        recipes.get("q7_k_x", smol)
    assert recipes.spec("f16") == "fp16" and recipes.spec(None) == "f32"
    assert repr(Spec("int4", {"group_size": 64})) == "int4(group_size=64)"


def test_named_mix_as_editable_recipe(smol):
    mix = recipes.get("q4_k_m", smol)
    assert mix["model.layers.0.self_attn.v_proj"] == "q6_k"  # use_more_bits layer, before the fallback
    assert mix["model.layers.3.self_attn.v_proj"] == "q4_k"
    assert mix["model.embed_tokens"] == "q8_0"  # tied output, 576 % 256 != 0
    assert {k: v.used for k, v in resolve_recipe(smol, mix).items()} == {
        k: v.used for k, v in resolve_recipe(smol, "q4_k_m").items()
    }


def test_mix_names_are_unambiguous(smol):
    """A bare "q2_k" is the pure format; the llama.cpp file type Q2_K is "llama:q2_k" (as_mix)."""
    assert recipes.as_mix("Q2_K") == recipes.as_mix("llama:q2_k") == "llama:q2_k"
    assert recipes.as_mix("q4_k_m") == "llama:q4_k_m"
    with pytest.raises(ValueError, match="mix"):
        recipes.as_mix("nf4")
    pure, mix = resolve_recipe(smol, "q2_k"), resolve_recipe(smol, recipes.as_mix("q2_k"))
    assert {c.requested for c in pure.values()} == {"q2_k"}
    assert mix["model.embed_tokens"].used == "q8_0" and pure["model.embed_tokens"].used == "q4_0"
    for cat in ("self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"):  # llama.cpp's Q2_K upgrades
        assert mix[f"model.layers.5.{cat}"].requested == "q3_k", cat
    assert mix["model.layers.5.mlp.down_proj"].used == "q3_k" and pure["model.layers.5.mlp.down_proj"].used == "q2_k"
    assert recipes.recipe_label("q2_k") == "pure q2_k"
    assert recipes.recipe_label("llama:q2_k") == "llama.cpp mix Q2_K"
    assert recipes.recipe_label("q4_k_m") == "llama.cpp mix Q4_K_M" and recipes.recipe_label("nf4") == "nf4"


# -- issue 11, item 7: patterns that select nothing raise ------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"recipe": "int8", "include": "fc3"}, r"include pattern\(s\) \['fc3'\] match no weight of the model \(4 weights\); "
                                               r"names look like 'conv1', 'conv2', 'fc1', 'fc2'"),
        ({"recipe": "int8", "exclude": ["fc1", "*.bias"]}, r"exclude pattern\(s\) \['\*\.bias'\] match no weight"),
        ({"recipe": {"fc*": "int8", "dense*": "int4"}}, r"recipe pattern\(s\) \['dense\*'\] match no weight"),
        ({"recipe": "int8", "include": ["fc1", 3]}, r"include: patterns must be non-empty strings .*got 3"),
        ({"recipe": "int8", "exclude": ""}, r"exclude: patterns must be non-empty strings .*got ''"),
        ({"recipe": "int8", "include": "fc*", "exclude": "fc*"}, r"leave no weight to quantize"),
    ],
)
def test_patterns_matching_nothing_raise(kwargs, match):
    import qlab

    m = qlab.models.load("digits-cnn", progress=False)
    before = m.model.fc1.weight.detach().clone()
    with pytest.raises(ValueError, match=match):
        quantize_model(m, **kwargs)
    assert torch.equal(m.model.fc1.weight, before)


def test_gguf_names_listed_for_an_llm(smol):
    with pytest.raises(ValueError, match=r"names look like 'model\.embed_tokens', .*'token_embd\.weight'"):
        resolve_recipe(smol, "q8_0", include="blk.99.*")
    assert resolve_recipe(smol, "q8_0", include="blk.0.attn_q.weight")["model.layers.0.self_attn.q_proj"].used == "q8_0"
