"""choose_format: hand-checked tables (both metric directions, ties, every error), then the committed
capstone caches: schema, a brute-force recomputation of every choice, and live re-measured rows."""

from __future__ import annotations

import numpy as np
import pytest

import qlab
from qlab.analysis.chooser import CAPSTONE, capstone_rows, choose_format, loss_pct, with_loss
from qlab.viz.pareto import pareto_front

# accuracy (higher is better); float reference 0.90 at 4 MB. Losses: a 44.44 %, b 5.556 %,
# c 2.222 %, d 0 %, e -1.111 % (better than float).
ACC = [
    {"format": "f32", "reference": True, "mb": 4.0, "bits_per_weight": 32.0, "accuracy": 0.90},
    {"format": "a", "mb": 0.5, "bits_per_weight": 1.0, "accuracy": 0.50},
    {"format": "b", "mb": 1.0, "bits_per_weight": 2.0, "accuracy": 0.85},
    {"format": "c", "mb": 1.0, "bits_per_weight": 2.0, "accuracy": 0.88},
    {"format": "d", "mb": 2.0, "bits_per_weight": 4.0, "accuracy": 0.90},
    {"format": "e", "mb": 2.0, "bits_per_weight": 4.0, "accuracy": 0.91},
]
# perplexity (lower is better); float 10.0. Losses: p 5 %, q 20 %, r 1 %.
PPL = [
    {"format": "f32", "reference": True, "mb": 8.0, "bits_per_weight": 32.0, "perplexity": 10.0},
    {"format": "p", "mb": 1.0, "bits_per_weight": 4.0, "perplexity": 10.5},
    {"format": "q", "mb": 0.5, "bits_per_weight": 2.0, "perplexity": 12.0},
    {"format": "r", "mb": 2.0, "bits_per_weight": 8.0, "perplexity": 10.1},
]


def test_loss_pct_by_hand():
    assert loss_pct(0.85, 0.90, maximize=True) == pytest.approx(100 * 0.05 / 0.90)
    assert loss_pct(10.5, 10.0, maximize=False) == pytest.approx(5.0)
    assert loss_pct(9.0, 10.0, maximize=False) == pytest.approx(-10.0)  # better than float
    got = {r["format"]: r["loss_pct"] for r in with_loss(ACC, "accuracy")}
    assert got == pytest.approx({"a": 400 / 9, "b": 50 / 9, "c": 20 / 9, "d": 0.0, "e": -10 / 9})
    with pytest.raises(ValueError, match="undefined"):
        loss_pct(1.0, 0.0, True)


@pytest.mark.parametrize(("budget", "tol", "want"), [
    (None, 5.0, "c"),     # b and c are the smallest (1 MB); only c is within 5 %
    (None, 6.0, "c"),     # both within: the tie on size goes to the more accurate
    (None, 50.0, "a"),
    (None, 0.0, "e"),     # d and e (2 MB) both lose <= 0 %; e is more accurate
    (1.5, None, "c"),     # most accurate within 1.5 MB
    (0.6, None, "a"),
    (100.0, None, "e"),   # everything fits: the most accurate, better than float
    (1.5, 50.0, "a"),     # tolerance given: smallest within both
    (2.0, 3.0, "c"),
])  # fmt: skip
def test_choices_by_hand(budget, tol, want):
    c = choose_format(ACC, "accuracy", budget_mb=budget, max_loss_pct=tol)
    assert c.format == want
    assert c.objective == ("size" if tol is not None else "accuracy")
    assert c.format in c.why and (f"{tol:g}%" in c.why if tol is not None else f"{budget:g} MB" in c.why)


def test_lower_is_better_metric():
    assert choose_format(PPL, "perplexity", max_loss_pct=5.5).format == "p"
    assert choose_format(PPL, "perplexity", max_loss_pct=1.0).format == "r"
    assert choose_format(PPL, "perplexity", budget_mb=1.5).format == "p"
    c = choose_format(PPL, "perplexity", budget_mb=0.75)
    assert (c.format, c.mb, c.value, c.loss) == ("q", 0.5, 12.0, pytest.approx(20.0))
    assert "+20.00% worse" in c.why and len(c.candidates) == 1


def test_errors_name_the_closest_miss():
    with pytest.raises(ValueError, match="budget_mb.*max_loss_pct"):
        choose_format(ACC, "accuracy")
    with pytest.raises(ValueError, match=r"no format fits in 0.4 MB: the smallest is a at 0.5 MB"):
        choose_format(ACC, "accuracy", budget_mb=0.4)
    with pytest.raises(ValueError, match=r"within 0.5% of the float perplexity: the closest is r \(\+1.00% worse\)"):
        choose_format(PPL, "perplexity", max_loss_pct=0.5)
    with pytest.raises(ValueError, match=r"both limits: within 0.9 MB the most accurate is a .* within 3% the smallest is c \(1 MB\)"):
        choose_format(ACC, "accuracy", budget_mb=0.9, max_loss_pct=3)
    with pytest.raises(ValueError, match="positive"):
        choose_format(ACC, "accuracy", budget_mb=0)
    with pytest.raises(ValueError, match=">= 0"):
        choose_format(ACC, "accuracy", max_loss_pct=-1)
    with pytest.raises(ValueError, match="exactly one reference"):
        choose_format(ACC[1:], "accuracy", max_loss_pct=1)
    with pytest.raises(ValueError, match="has no 'kl'"):
        with_loss([{**ACC[0], "kl": 0.0}, ACC[1]], "kl")


# --- the committed capstone caches -------------------------------------------------------------

ROW_KEYS = {"format", "bits_per_weight", "mb", "fallbacks", "reference", "seconds"}


@pytest.fixture(params=list(CAPSTONE), scope="module")
def capstone(request):
    payload = qlab.cache.load(CAPSTONE[request.param][0])
    return request.param, payload


def test_cache_schema(capstone):
    model, payload = capstone
    rows, metric = capstone_rows(model, joined=False)
    assert payload["script"] == "scripts/capstone_sweeps.py" and payload["params"]["model"] == model
    assert payload["params"]["metric"] == metric
    assert rows[0]["reference"] and rows[0]["format"] == "f32" and rows[0]["bits_per_weight"] == 32.0
    assert sum(r["reference"] for r in rows) == 1
    assert [r["format"] for r in rows[1:]] == payload["params"]["formats"]
    n = payload["params"]["n_params"]
    assert rows[0]["mb"] == pytest.approx(4 * n / 1e6)
    for r in rows:
        assert ROW_KEYS <= set(r) and np.isfinite(r[metric]), r["format"]
        assert r["reference"] or sum(r["used"].values()) > 0  # tensors per format actually written
        assert 0 < r["mb"] <= rows[0]["mb"] and 0 < r["bits_per_weight"] <= 32
    if model == "smollm2-135m":
        assert payload["params"]["window"] == 512 and payload["params"]["windows"] == 16
        assert all({"perplexity", "kl", "top1"} <= set(r) for r in rows)
    else:
        assert "e8m0" not in payload["params"]["formats"]
        # every format but the IQ lattice types, which join the capstone sweep together with
        # whole-model importance matrices (issue 12; iq2_xxs, iq2_xs and iq1_s need one)
        lattice = {n for n in qlab.formats.names() if n.startswith(("iq1", "iq2", "iq3"))}
        assert len(lattice) == 7
        assert set(payload["params"]["formats"]) == set(qlab.formats.names()) - {"e8m0"} - lattice


def test_joined_imatrix_rows_match_lesson_16s_table():
    """SmolLM2's front gains lesson 16's types, each with the WikiText imatrix; MB from bits/weight
    as in the sweep."""
    sweep, _ = capstone_rows("smollm2-135m", joined=False)
    rows, _ = capstone_rows("smollm2-135m")
    assert rows[: len(sweep)] == sweep
    table = qlab.cache.load("imatrix_table")
    joined = {r["format"]: r for r in rows[len(sweep) :]}
    wiki = {r["type"] for r in table["rows"] if r["imatrix"] == "wiki"}
    assert set(joined) == {f"{t}+imatrix" for t in wiki} and len(wiki) == 11
    assert {t for t in wiki if t.startswith(("iq1", "iq2", "iq3"))} == {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s",
                                                                       "iq3_xxs", "iq3_s"}  # fmt: skip
    n = qlab.cache.load("capstone_smollm2_135m")["params"]["n_params"]
    sweep_by = {r["format"]: r for r in sweep}
    for r in table["rows"]:
        name = f"{r['type']}+imatrix" if r["imatrix"] == "wiki" else None
        if name in joined:
            j = joined[name]
            assert j["perplexity"] == r["perplexity"] and j["kl"] == r["kl"]
            assert j["mb"] == pytest.approx(r["bits_per_weight"] * n / 8e6, rel=1e-12)
            assert sum(j["used"].values()) == 211 and j["source"] == "scripts/imatrix_table.py"
        if r["imatrix"] == "none" and r["type"] in sweep_by:  # measured twice, the same numbers
            assert sweep_by[r["type"]]["perplexity"] == pytest.approx(r["perplexity"], rel=1e-9)
            assert sweep_by[r["type"]]["mb"] == pytest.approx(r["bits_per_weight"] * n / 8e6, rel=1e-9)


def test_joined_rows_refuse_another_protocol():
    from qlab.analysis.chooser import imatrix_rows

    cap, table = qlab.cache.load("capstone_smollm2_135m"), qlab.cache.load("imatrix_table")
    other = {**table, "params": {**table["params"], "windows": 8}}
    with pytest.raises(ValueError, match="windows 16 vs 8"):
        imatrix_rows(cap, other)
    shifted = {**table, "rows": [{**r, "perplexity": r["perplexity"] + 1} if r["type"] == "f32" else r for r in table["rows"]]}
    with pytest.raises(ValueError, match="float perplexity"):
        imatrix_rows(cap, shifted)


def test_every_choice_matches_brute_force(capstone):
    """Independent check: numpy filters and argmins over the cache's columns, for a grid of limits."""
    model, _ = capstone
    rows, metric = capstone_rows(model)
    ref, pts = rows[0], rows[1:]
    mb = np.array([r["mb"] for r in pts])
    v = np.array([r[metric] for r in pts])
    sign = 1.0 if metric in ("accuracy", "top10_overlap") else -1.0  # +1: higher is better
    loss = 100 * sign * (ref[metric] - v) / abs(ref[metric])
    front = pareto_front(mb, v, maximize_y=sign > 0)
    for tol in (0.0, 0.5, 1, 2, 5, 10, 50):
        ok = np.flatnonzero(loss <= tol)
        if not len(ok):
            with pytest.raises(ValueError, match="no format is within"):
                choose_format(rows, metric, max_loss_pct=tol)
            continue
        best = ok[np.lexsort((loss[ok], mb[ok]))[0]]
        c = choose_format(rows, metric, max_loss_pct=tol)
        assert (c.mb, c.loss) == (mb[best], pytest.approx(loss[best])), (model, tol)
        assert front[[r["format"] for r in pts].index(c.format)]  # a chosen format is never dominated
    for frac in (0.05, 0.1, 0.2, 0.3, 0.5):
        budget = frac * ref["mb"]
        ok = np.flatnonzero(mb <= budget)
        if not len(ok):
            continue
        best = ok[np.lexsort((mb[ok], loss[ok]))[0]]
        c = choose_format(rows, metric, budget_mb=budget)
        assert (c.mb, c.loss) == (mb[best], pytest.approx(loss[best])), (model, frac)


def test_digits_rows_remeasured_live():
    """Re-run two rows of the digits sweep (quantize + test accuracy) and compare with the cache."""
    from qlab.quantize import quantize_model

    rows = {r["format"]: r for r in capstone_rows("digits-cnn")[0]}
    m = qlab.models.load("digits-cnn", progress=False)
    assert qlab.eval.accuracy(m) == rows["f32"]["accuracy"]
    for fmt in ("q4_0", "int3"):
        m = qlab.models.load("digits-cnn", progress=False)
        rep = quantize_model(m, fmt)
        assert rep.total_bytes / 1e6 == pytest.approx(rows[fmt]["mb"], rel=1e-12)
        assert qlab.eval.accuracy(m) == rows[fmt]["accuracy"]


def test_minilm_sizes_remeasured_live():
    """Sizes (no evaluation) of two MiniLM rows: quantize_model's report against the cache."""
    from qlab.quantize import quantize_model

    rows = {r["format"]: r for r in capstone_rows("minilm-l6")[0]}
    for fmt in ("q4_k", "nf4"):
        m = qlab.models.load("minilm-l6", progress=False)
        rep = quantize_model(m, fmt)
        assert rep.bits_per_weight == pytest.approx(rows[fmt]["bits_per_weight"], rel=1e-12)
        assert rep.total_bytes / 1e6 == pytest.approx(rows[fmt]["mb"], rel=1e-12)
        assert len(rep.fallbacks) == rows[fmt]["fallbacks"]


def test_unknown_model():
    with pytest.raises(ValueError, match="smollm2-135m"):
        capstone_rows("resnet")
