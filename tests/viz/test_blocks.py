"""Block tables and mix sizes against real encodes and llama.cpp's Q4_K_M choices for SmolLM2."""

import numpy as np
import pytest

import qlab
from qlab.viz.blocks import block_table, mix_state, readout, tensor_bytes


@pytest.mark.parametrize("fmt", ["q4_0", "q8_0", "q5_1", "q4_k", "q6_k", "iq4_xs", "mxfp4", "nvfp4", "nf4",
                                 "mxfp8_e4m3", "int8", "fp16"])
def test_tensor_bytes_equals_encoded(fmt):
    x = np.random.default_rng(0).normal(size=(8, 512)).astype(np.float32)
    assert tensor_bytes(fmt, x.shape) == qlab.formats.get(fmt).encode(x).nbytes
    assert tensor_bytes("f32", x.shape) == x.nbytes


def test_block_table_bits():
    rows = {r["name"]: r for r in block_table()}
    assert rows["q4_0"]["bits_per_weight"] == 4.5 and rows["mxfp4"]["bits_per_weight"] == 4.25
    assert rows["nvfp4"]["block_size"] == 16 and rows["nvfp4"]["per_tensor_bytes"] == 4
    assert rows["q4_k"]["bytes_per_block"] == 144 and rows["q6_k"]["bits_per_weight"] == 6.5625


@pytest.fixture(scope="module")
def smol():
    return qlab.models.load("smollm2-135m", progress=False)


def test_q4_k_m_on_smollm2(smol):
    # the choices llama.cpp's llama_model_quantize makes (see qlab.quantize.recipes' docstring, tested there)
    s = mix_state(smol, "q4_k_m")
    assert s["by_category"]["ffn_down"] == {"q4_k": 16, "q6_k": 14}
    assert s["by_category"]["attn_v"] == {"q5_0": 16, "q8_0": 14}
    assert s["by_category"]["token_embd"] == {"q8_0": 1}
    assert s["used"]["q5_0"] == 166 and s["fallbacks"] == 180
    assert s["params"] + s["other_params"] == sum(p.numel() for p in smol.model.parameters())
    assert s["total_bytes"] / 1e6 == pytest.approx(103.7, abs=0.05)
    assert s["bits_per_weight"] == pytest.approx(8 * s["weight_bytes"] / s["params"])
    assert "Q4_K_M" in readout(s)


def test_q8_0_is_uniform(smol):
    s = mix_state(smol, "q8_0")
    assert set(s["used"]) == {"q8_0"} and s["bits_per_weight"] == pytest.approx(8.5)


def test_mix_state_is_always_the_mix(smol):
    from qlab.viz.blocks import recipe_state

    mix, pure = mix_state(smol, "q2_k"), recipe_state(smol, "q2_k")
    assert mix["label"] == "llama.cpp mix Q2_K" and pure["label"] == "pure q2_k"
    assert mix["by_category"]["token_embd"] == {"q8_0": 1} and pure["by_category"]["token_embd"] == {"q4_0": 1}
    assert mix["total_bytes"] / 1e6 == pytest.approx(86.42, abs=0.01)
    assert pure["total_bytes"] / 1e6 == pytest.approx(69.56, abs=0.01)
    assert readout(mix).startswith("llama.cpp mix Q2_K:")


def test_readout_names_type_then_count(smol):
    text = readout(mix_state(smol, "q4_k_m"))
    assert "token_embd   q8_0 x1" in text and "ffn_down     q4_k x16, q6_k x14" in text


def test_mix_panel_readout_follows_the_mix(smol):
    from qlab.viz.blocks import mix_panel
    from tests.viz.panel_probe import move

    panel = mix_panel(smol)
    (_, text0), (_, text1) = move(panel, "mix", "q8_0")
    assert text1 == "<pre>" + readout(mix_state(smol, "q8_0")) + "</pre>" != text0
    assert move(panel, "mix", "q4_k_m")[1][1] == text0
