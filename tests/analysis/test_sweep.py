"""sweep(): one reference forward, formats from a snapshot, results cached on disk."""
# ruff: noqa: F811  (test arguments named after the imported fixtures)

from __future__ import annotations

import json
import time

import pytest
import torch

import qlab
from qlab.analysis.sweep import cache_dir, model_fingerprint, recipe_key, sweep
from qlab.core import lm
from qlab.eval import compare, perplexity, reference
from qlab.quantize import quantize_model
from qlab.quantize.recipes import targets
from tests.quantize._fixtures import single_thread, smol  # noqa: F401  (pytest fixtures)

W, N = 48, 2  # tiny windows: the protocol, not the numbers, is under test




def test_streaming_metrics_equal_qlab_eval(smol):
    """The sweep's batched evaluator (fp16 reference log-probs) agrees with qlab.eval's float32 one."""
    m = smol.fresh()
    ref = lm.reference(m, None, W, N, torch.float16, progress=False, batch=2)
    assert ref.perplexity == pytest.approx(perplexity(m, None, W, N, progress=False), rel=1e-6)
    ref32 = reference(m, None, W, N, progress=False)
    quantize_model(m, "q8_0", include="model.layers.[0-9].*")
    ours, theirs = lm.compare(m, ref, progress=False, batch=2), compare(m, ref32, progress=False)
    assert ours["perplexity"] == pytest.approx(theirs["perplexity"], rel=1e-6)
    assert ours["top1"] == theirs["top1"]
    assert ours["kl"] == pytest.approx(theirs["kl"], rel=2e-3)  # fp16 storage of the reference
    assert 0 < ours["kl"] < 0.01


def test_sweep_caches_and_restores(smol, tmp_path):
    m = smol.fresh()
    probe = m.model.model.layers[3].mlp.down_proj.weight.detach().clone()
    fp = model_fingerprint(m)
    kw = {"window": W, "windows": N, "include": "model.layers.[0-3].*", "cache_path": tmp_path, "progress": False}
    first = sweep(m, ["q8_0", "q4_0"], **kw)
    assert torch.equal(m.model.model.layers[3].mlp.down_proj.weight, probe)  # weights restored
    assert model_fingerprint(m) == fp
    rows = {r["format"]: r for r in first.rows}
    assert list(rows) == ["f32 (reference)", "q8_0", "q4_0"]
    assert not any(r.get("cached") for r in first.rows)
    assert rows["f32 (reference)"]["kl"] == 0 and rows["f32 (reference)"]["bits_per_weight"] == 32
    assert rows["q8_0"]["used"] == {"f32": 211 - 28, "q8_0": 28}
    assert 0 < rows["q8_0"]["kl"] < rows["q4_0"]["kl"] and rows["q8_0"]["mb"] > rows["q4_0"]["mb"]
    assert [r["format"] for r in first.pareto()] == ["q8_0", "q4_0"]
    assert len(list((tmp_path / "sweeps").glob("*.json"))) == 3

    t0 = time.perf_counter()
    second = sweep(m, ["q4_0", "q8_0"], **kw)
    assert time.perf_counter() - t0 < 10  # no quantization, no forward pass: the fingerprint only
    assert all(r.get("cached") for r in second.rows)
    for r in second.rows:
        assert {k: v for k, v in r.items() if k != "cached"} == {k: v for k, v in rows[r["format"]].items() if k != "cached"}

    # another evaluation setting, recipe or weight selection is another key
    other = sweep(m, [("q8_0", {})], **{**kw, "window": W + 1})
    assert not any(r.get("cached") for r in other.rows)
    assert "q8_0" in other.table() and "KL" in other.table()
    other = sweep(m, ["q8_0"], **{**kw, "include": "model.layers.0.*"})
    assert not other.rows[1].get("cached") and other.rows[0].get("cached")  # same reference
    with pytest.raises(ValueError, match="metric"):
        sweep(m, ["q8_0"], "accuracy", **kw)


def test_cache_location_and_keys(monkeypatch, tmp_path):
    monkeypatch.setenv("QLAB_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and cache_dir("/x") == type(tmp_path)("/x")
    monkeypatch.delenv("QLAB_CACHE")
    assert cache_dir().name == "qlab"
    assert recipe_key("Q4_0") == recipe_key(("q4_0", {})) != recipe_key("llama:q4_0")
    assert recipe_key(("int4", {"group_size": 64, "granularity": "group"})) == recipe_key(
        ("int4", {"granularity": "group", "group_size": 64})
    )


def test_sweep_of_a_classifier_uses_its_evaluation(tmp_path):
    m = qlab.models.load("digits-cnn", progress=False)
    res = sweep(m, ["int8", "int2"], cache_path=tmp_path, progress=False)
    assert res.metric == "accuracy" and res.maximize
    acc = {r["format"]: r["accuracy"] for r in res.rows}
    assert acc["int8"] > acc["int2"] and abs(acc["int8"] - acc["f32 (reference)"]) < 0.02
    assert res.rows[1]["used"] == {"int8": len(targets(m))}  # conv and linear weights


# -- issue 11, item 8: the fingerprint sees every byte -----------------------------------------------
def _swapped(m):
    """A copy of digits-cnn with fc1[0, 1] and fc1[0, 9] swapped: the row sum is bit-identical
    (numpy adds both into the same pairwise accumulator) and neither is at a stride-4 sample."""
    m2 = m.fresh()
    w = m2.model.fc1.weight
    with torch.no_grad():
        w[0, 1], w[0, 9] = w[0, 9].clone(), w[0, 1].clone()
    assert w.detach().numpy().sum(axis=1).tobytes() == m.model.fc1.weight.detach().numpy().sum(axis=1).tobytes()
    assert not torch.equal(w, m.model.fc1.weight)
    return m2


def test_fingerprint_sees_an_in_row_swap(tmp_path):
    m = qlab.models.load("digits-cnn", progress=False)
    m2 = _swapped(m)
    assert model_fingerprint(m2) != model_fingerprint(m)
    assert model_fingerprint(m.fresh()) == model_fingerprint(m)
    first = sweep(m, ["int8"], cache_path=tmp_path, progress=False)
    second = sweep(m2, ["int8"], cache_path=tmp_path, progress=False)  # not served m's rows
    assert not any(r.get("cached") for r in second.rows)
    assert all(r.get("cached") for r in sweep(m, ["int8"], cache_path=tmp_path, progress=False).rows)
    assert len(first.rows) == len(second.rows) == 2


# -- issue 11: valid JSON that is not an object in the sweep cache is recomputed --------------------------
def test_damaged_cache_entries_are_recomputed(tmp_path):
    m = qlab.models.load("digits-cnn", progress=False)
    first = sweep(m, ["int8"], cache_path=tmp_path, progress=False)
    files = sorted((tmp_path / "sweeps").glob("*.json"))
    assert len(files) == 2
    for f, junk in zip(files, ["[1, 2]", "null"], strict=True):
        f.write_text(junk)
    again = sweep(m, ["int8"], cache_path=tmp_path, progress=False)  # no TypeError
    assert not any(r.get("cached") for r in again.rows)
    assert [r["format"] for r in again.rows] == [r["format"] for r in first.rows]
    assert all(isinstance(json.loads(f.read_text()), dict) for f in files)  # rewritten
    assert sorted(p.name for p in (tmp_path / "sweeps").iterdir()) == [f.name for f in files]  # no temp files


def test_sweep_rows_equal_quantize_then_compare(smol):
    """The sweep's fast path (quantize_model(errors=False): one decode per weight, no SQNR; the
    evaluator's row blocks) gives the rows of quantize_model + lm.compare exactly (issue 13 item 4)."""
    from qlab.quantize.model import WeightSnapshot

    m = smol.fresh()
    res = sweep(m, ["q8_0", "q4_k"], window=64, windows=2, cache=False, progress=False, batch=2)
    snap = WeightSnapshot(m)
    ref = lm.reference(m, None, 64, 2, torch.float16, progress=False, batch=2)
    assert res.rows[0]["perplexity"] == ref.perplexity
    for row in res.rows[1:]:
        rep = quantize_model(m, row["format"], source=snap)  # errors=True: decoded twice, SQNR measured
        fast = quantize_model(smol.fresh(), row["format"], errors=False)
        assert [r.nbytes for r in fast.layers] == [r.nbytes for r in rep.layers]
        assert all(r.sqnr_db != r.sqnr_db for r in fast.layers if r.used != "f32")  # NaN: not measured
        assert all(r.sqnr_db > 0 for r in rep.layers)
        got = lm.compare(m, ref, progress=False, batch=2)
        assert row["bits_per_weight"] == rep.bits_per_weight
        assert (row["perplexity"], row["kl"], row["top1"]) == (got["perplexity"], got["kl"], got["top1"])
