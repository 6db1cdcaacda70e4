"""Activation capture: the hooks see what the model computes (checked against transformers'
own hidden states), and SmolLM2's massive residual-stream activations are found."""
# ruff: noqa: F811  (test arguments named after the imported fixtures)

from __future__ import annotations

import numpy as np
import torch

from qlab.analysis.activations import capture_activations, compare_activations, residual_outliers
from qlab.eval.perplexity import token_windows
from qlab.quantize import quantize_model
from tests.quantize._fixtures import single_thread, smol  # noqa: F401  (pytest fixtures)


def test_hooks_match_hidden_states_and_find_massive_activations(smol):
    acts = capture_activations(smol, tokens=64)
    ids = token_windows(smol, None, 64, 1)
    with torch.inference_mode():
        hs = smol.model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
    for i in (0, 5, 12):  # hidden_states[i + 1] is block i's output (the last one is normed)
        a = hs[i + 1][0].abs()
        s = acts[f"model.layers.{i}:output"]
        np.testing.assert_allclose(s.absmax, a.amax(0).numpy(), rtol=1e-6)
        np.testing.assert_allclose(s.mean_abs, a.mean(0).numpy(), rtol=1e-5)
        assert s.tokens == 64
    # a Linear input: q_proj of block 3 sees the normed residual stream (576 channels)
    assert acts["model.layers.3.self_attn.q_proj:input"].absmax.shape == (576,)
    assert acts["model.layers.3.mlp.down_proj:input"].absmax.shape == (1536,)

    rows = {r["name"]: r for r in residual_outliers(acts, k=20)}
    mid = rows["model.layers.15"]
    assert mid["ratio"] > 100 and mid["max"] > 1000  # massive: hundreds of times the median channel
    ch = mid["channels"][0]
    assert all(ch in rows[f"model.layers.{i}"]["channels"] for i in range(12, 28))  # the same channel
    assert int(np.argmax(acts["model.layers.15:output"].token_absmax)) == 0  # on the first token


def test_before_after_quantization(smol):
    m = smol.fresh()
    ref = capture_activations(m, tokens=32, include="*layers.2.*")
    quantize_model(m, "q4_0", include="*layers.2.*")
    q = capture_activations(m, tokens=32, include="*layers.2.*")
    rows = {r["name"]: r for r in compare_activations(ref, q)}
    assert 0 < rows["model.layers.2.mlp.down_proj:input"]["mean_abs_rel_change"] < 1
    assert "model.layers.5.self_attn.q_proj:input" not in rows  # include restricts the Linear hooks
    assert "model.layers.5:output" in rows and rows["model.layers.1:output"]["mean_abs_rel_change"] == 0
