"""quantize_model on real models: weights become exactly decode(encode(w)), sizes are exact."""

from __future__ import annotations

import pytest
import torch

import qlab
from qlab.analysis.error import error_stats
from qlab.formats import get, roundtrip
from qlab.quantize import WeightSnapshot, quantize_model
from qlab.quantize.recipes import targets
from tests.quantize._fixtures import single_thread  # noqa: F401  (fixture)


@pytest.fixture()
def smol():
    return qlab.models.load("smollm2-135m", progress=False)  # an independent copy per test


def test_q8_0_weights_are_exact_roundtrips(smol):
    model = smol.model
    before = {t.name: t.weight.detach().clone() for t in targets(smol)}
    norms = {n: p.detach().clone() for n, p in model.named_parameters() if p.ndim == 1}
    rep = quantize_model(smol, "q8_0")

    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied, quantized once
    assert len(rep.layers) == len(before) == 211
    assert rep.layers[0].name == "model.embed_tokens" and rep.layers[0].aliases == ("lm_head",)
    for t in targets(smol):
        expect = torch.from_numpy(roundtrip(before[t.name], "q8_0"))
        assert torch.equal(t.weight.detach(), expect), t.name
    for n, p in model.named_parameters():
        if p.ndim == 1:
            assert torch.equal(p, norms[n])  # norms are not touched

    lay = get("q8_0").layout()  # 34 bytes per 32 values
    weights = sum(w.numel() // lay.block_size * lay.nbytes for w in before.values())
    other = sum(p.numel() for p in model.parameters() if p.ndim == 1)
    assert rep.other_params == other
    assert rep.total_bytes == weights + 4 * other
    assert rep.fp32_bytes == 4 * sum(p.numel() for p in model.parameters())
    assert rep.bits_per_weight == pytest.approx(8 * rep.total_bytes / rep.total_params)
    # the published embedding *is* Q8_0: re-quantizing it reproduces it exactly (see the note)
    assert rep.layers[0].sqnr_db == float("inf") and rep.layers[0].max_abs_err == 0.0
    assert all(r.fallbacks == [] for r in [rep]) and "q8_0 x211" in rep.summary()
    d = rep.to_dict()
    assert d["total_bytes"] == rep.total_bytes and len(d["layers"]) == 211


def test_published_q4_1_grid_is_lossless_and_other_formats_are_not(smol):
    snap = WeightSnapshot(smol)
    rep = quantize_model(smol, "q4_1", include=["model.layers.1.*", "model.layers.[12][0-9].mlp.down_proj"])
    q = [r for r in rep.layers if r.used == "q4_1"]
    assert len(q) == 7 + 20
    assert all(r.sqnr_db == float("inf") for r in q)  # the linear weights were published in Q4_1
    rep = quantize_model(smol, "q4_0", include="model.layers.1.*", source=snap)
    q = [r for r in rep.layers if r.used == "q4_0"]
    assert len(q) == 7 and all(10 < r.sqnr_db < 40 and r.mse > 0 for r in q)
    # quantizing from the snapshot leaves every weight outside the recipe at its original value
    for t in targets(smol):
        if t.name.startswith(("model.layers.12.", "model.layers.20.")):  # were q4_1 before: restored
            assert torch.equal(t.weight.detach(), snap.weights[t.name])
    snap.restore(smol)
    assert all(torch.equal(t.weight.detach(), snap.weights[t.name]) for t in targets(smol) if "layers.1." in t.name)


def test_options_and_error_stats(smol):
    opts = {"granularity": "group", "group_size": 64}
    rep = quantize_model(smol, ("int4", opts), include="*layers.0.self_attn.k_proj")
    (row,) = [r for r in rep.layers if r.used != "f32"]
    assert row.used == "int4(granularity='group', group_size=64)"
    w0 = qlab.models.load("smollm2-135m", progress=False).model.get_submodule(row.name).weight.detach()
    y = roundtrip(w0, "int4", **opts)
    stats = error_stats(w0.numpy(), y)
    assert row.sqnr_db == pytest.approx(stats["sqnr_db"], rel=1e-9)
    assert row.mse == pytest.approx(stats["mse"], rel=1e-9)
    assert row.max_abs_err == stats["max_abs_err"]
    assert row.nbytes == get("int4").encode(w0, **opts).nbytes


def test_conv_and_linear_of_digits_cnn():
    m = qlab.models.load("digits-cnn", progress=False)
    before = {t.name: t.weight.detach().clone() for t in targets(m)}
    assert any(isinstance(t.module, torch.nn.Conv2d) for t in targets(m))
    rep = quantize_model(m, "int8")
    for t in targets(m):  # conv kernels quantize as rows of in_channels * kh * kw
        w = before[t.name]
        expect = torch.from_numpy(roundtrip(w.reshape(w.shape[0], -1), "int8")).reshape(w.shape)
        assert torch.equal(t.weight.detach(), expect)
    assert all(r.used == "int8" for r in rep.layers)
    with pytest.raises(TypeError, match="torch module"):
        quantize_model(object(), "q8_0")


# -- issue 11, item 6: validate every layer first, then modify -------------------------------------
@pytest.mark.parametrize("via", ["quantize_model", "quantize_"])
def test_bad_last_layer_leaves_the_model_untouched(via):
    m = qlab.models.load("digits-cnn", progress=False)
    with torch.no_grad():
        m.model.fc2.weight[3, 7] = float("nan")
    before = {n: p.detach().clone() for n, p in m.model.named_parameters()}
    with pytest.raises(ValueError, match=r"layer 'fc2' \(shape \(10, 32\), format int8\): int8: input has 1 "
                                         r"non-finite value.*no weight of the model was changed"):
        if via == "quantize_model":
            quantize_model(m, "int8")
        else:
            qlab.quantize_(m, qlab.quantize.WeightOnlyConfig(recipe="int8"))
    for n, p in m.model.named_parameters():
        assert torch.equal(torch.nan_to_num(p), torch.nan_to_num(before[n])), n


def test_snapshot_unchanged_and_clean_after_a_failed_layer():
    m = qlab.models.load("digits-cnn", progress=False)
    snap = WeightSnapshot(m)
    snap.weights["fc2"][0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"layer 'fc2'"):
        quantize_model(m, "q8_0", source=snap)
    assert snap.dirty == set()
    assert torch.equal(m.model.conv1.weight, snap.weights["conv1"])
