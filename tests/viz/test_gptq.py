"""qlab.viz.gptq: the panel's state against direct computations (qlab.formats round-to-nearest,
X @ W^T in torch) on a layer with outlier input channels, and the cache's schema."""

import numpy as np
import pytest
import torch

from qlab import formats
from qlab.viz import gptq as V


@pytest.fixture(scope="module")
def layer():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(64, 64, generator=g) / 8 + torch.eye(64)
    x = torch.randn(1024, 64, generator=g) @ mix  # correlated inputs
    x[:, :3] *= 20  # a few outlier channels, as in LLM activations
    w = torch.randn(48, 64, generator=g) * 0.05
    return x, w


@pytest.mark.parametrize(("bits", "group"), [(4, 32), (3, None)])
def test_layer_errors(layer, bits, group):
    torch.set_num_threads(1)
    x, w = layer
    st = V.layer_errors(x, w, bits, group, n_grid=10)
    spec = V.int_spec(bits, group)
    rtn = torch.from_numpy(formats.roundtrip(w.numpy(), spec, **spec.options))
    direct = float(torch.linalg.norm(x @ (w - rtn).T) / torch.linalg.norm(x @ w.T))
    assert st["rtn"] == pytest.approx(direct, rel=1e-5)
    assert st["gptq"] < st["rtn"] and st["awq"] <= st["rtn"] * (1 + 1e-6)
    per_group = 4 + 1  # fp32 scale + uint8 zero-point
    assert st["bits_per_weight"] == pytest.approx(bits + 8 * per_group / (group or 64))


def test_methods_cache_schema():
    try:
        rows = V.methods_rows()
    except FileNotFoundError:
        pytest.skip("data/cache/llm_methods.json not generated yet (scripts/llm_methods.py)")
    assert rows[0]["method"] == "float"
    for r in rows[1:]:
        assert r["method"] in ("rtn", "awq", "gptq") and r["bits"] in (3, 4) and r["group_size"] in (32, None)
        assert r["bits_per_weight"] > r["bits"] and np.isfinite(r["perplexity"])
    assert "PPL" in V.methods_text(rows)
