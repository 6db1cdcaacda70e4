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


def test_layer_errors_held_out(layer):
    """Errors on held-out tokens: RTN's recomputed directly on them; ``fit`` is the in-sample call."""
    torch.set_num_threads(1)
    x, w = layer
    cal, held = x[:512], x[512:]
    st = V.layer_errors(cal, w, 4, 32, n_grid=5, x_eval=held)
    same = V.layer_errors(cal, w, 4, 32, n_grid=5)
    spec = V.int_spec(4, 32)
    rtn = torch.from_numpy(formats.roundtrip(w.numpy(), spec, **spec.options))
    direct = float(torch.linalg.norm(held @ (w - rtn).T) / torch.linalg.norm(held @ w.T))
    assert st["rtn"] == pytest.approx(direct, rel=1e-5)
    for k in ("rtn", "awq", "gptq"):  # `fit` = the errors on the calibration tokens themselves
        assert st["fit"][k] == pytest.approx(same[k], rel=1e-6)
    assert st["alpha"] == same["alpha"]


def _row(method, bits, group, ppl, kl):
    return {"method": method, "bits": bits, "group_size": group, "bits_per_weight": float(bits) + 1,
            "perplexity": ppl, "kl": kl, "top1": 0.9, "seconds": 1.0}  # fmt: skip


def test_partial_cache(monkeypatch, tmp_path):
    """A cache still being written (rows in any order, some missing) is sorted, printed, and
    compared with RTN where both rows exist."""
    from qlab import cache

    rows = [_row("gptq", 4, 32, 20.0, 0.05), _row("float", 32, None, 18.0, 0.0), _row("rtn", 4, 32, 21.0, 0.08),
            _row("awq", 4, 32, 21.5, 0.07), _row("rtn", 3, None, 90.0, 1.2)]  # fmt: skip
    monkeypatch.setenv("QLAB_DATA", str(tmp_path))
    cache.save("llm_methods", rows, script="scripts/llm_methods.py")
    got = V.methods_rows()
    assert [(r["method"], r["bits"], r["group_size"]) for r in got] == [
        ("float", 32, None), ("rtn", 4, 32), ("awq", 4, 32), ("gptq", 4, 32), ("rtn", 3, None)]
    text = V.methods_text(got)
    assert len(text.splitlines()) == 2 + len(rows) and "channel" in text
    vs = {(r["method"], r["bits"], r["group_size"]): r for r in V.versus_rtn(got)}
    assert len(vs) == 8
    assert vs[("gptq", 4, 32)]["beats_ppl"] and vs[("gptq", 4, 32)]["beats_kl"]
    assert not vs[("awq", 4, 32)]["beats_ppl"] and vs[("awq", 4, 32)]["beats_kl"]  # 21.5 > 21.0, 0.07 < 0.08
    assert vs[("awq", 3, None)]["missing"] == ["awq"] and vs[("gptq", 3, 32)]["missing"] == ["rtn", "gptq"]


def test_layer_panel_redraws_in_place(layer):
    """Moving the bits slider redraws the picture and the readout, with layer_errors' numbers."""
    from .panel_probe import one

    torch.set_num_threads(1)
    x, w = layer
    panel = V.layer_panel(x[:512], w, x_eval=x[512:])
    img, text, bits = one(panel, "Image"), one(panel, "HTML"), one(panel, "IntSlider", "bits")
    png0, text0 = img.value, text.value
    assert png0[:8] == b"\x89PNG\r\n\x1a\n"
    bits.value = 3
    st = V.layer_errors(x[:512], w, 3, 32, x_eval=x[512:])
    assert img.value != png0 and text.value != text0
    assert f"gptq {st['gptq']:.4f}" in text.value and f"rtn {st['rtn']:.4f}" in text.value
    bits.value = 4  # a setting already seen: the remembered state, the first picture again
    assert text.value == text0 and img.value == png0
