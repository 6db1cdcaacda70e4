"""Lesson 11's panel state and the low-bit helpers it stands on, against independent computations."""

import numpy as np
import pytest

import qlab
from qlab.analysis.lowbits import GRIDS, grid_roundtrip, low_bits_table, ternary_absmean
from qlab.viz.lowbits import BY_BITS, lowbits_state, readout

RNG = np.random.default_rng(0)
WEIGHTS = {"down": RNG.normal(scale=0.02, size=(8, 512)).astype(np.float32),
           "q": RNG.laplace(scale=0.02, size=(8, 576)).astype(np.float32)}  # fmt: skip


def test_ternary_absmean_matches_the_paper():
    w = WEIGHTS["down"]
    codes, gamma = ternary_absmean(w)
    g = np.abs(w.astype(np.float64)).mean()  # independent float64 mean
    assert gamma == pytest.approx(g, rel=1e-6)
    ref = np.clip(np.round(w.astype(np.float64) / (g + 1e-5)), -1, 1)
    assert np.array_equal(codes, ref.astype(np.int8)) and set(np.unique(codes)) <= {-1, 0, 1}
    # |w| < gamma/2 rounds to zero; gamma = sqrt(2/pi) sigma for a normal tensor: P(|z| < 0.399) = 0.310
    assert abs((codes == 0).mean() - 0.310) < 0.03
    with pytest.raises(ValueError, match="non-empty"):
        ternary_absmean(np.zeros((0, 4), np.float32))


def test_grid_roundtrip_uses_qlab_formats_and_fallback():
    x = WEIGHTS["down"]
    y, nb, used = grid_roundtrip(x, "q2_k")
    assert used == "q2_k" and np.array_equal(y, qlab.roundtrip(x, "q2_k")) and nb == 8 * 2 * 84
    y, nb, used = grid_roundtrip(WEIGHTS["q"], "q2_k")  # 576 is not a multiple of 256
    assert used == "q4_0" and np.array_equal(y, qlab.roundtrip(WEIGHTS["q"], "q4_0"))
    y, nb, used = grid_roundtrip(x, GRIDS["int2 g32 (asymmetric, 4 levels)"])
    assert nb == x.size // 4 + x.size // 32 * 5
    y, nb, used = grid_roundtrip(x, "ternary")
    assert used == "ternary" and nb == x.size // 4 + 4 and len(np.unique(y)) == 3


def test_state_follows_layer_bits_and_grid():
    s = lowbits_state(WEIGHTS, "down", "2")
    assert s["grid"] == BY_BITS["2"][0] == "q2_k" and s["used"] == "q2_k"
    assert s["bits_per_weight"] == pytest.approx(2.625)
    err = s["decoded"].astype(np.float64) - WEIGHTS["down"]
    assert s["sqnr_db"] == pytest.approx(10 * np.log10((WEIGHTS["down"].astype(np.float64) ** 2).sum() / (err**2).sum()))
    t = lowbits_state(WEIGHTS, "down", "1.58", "ternary absmean (BitNet b1.58)")
    assert t["levels_per_row"] <= 3 and t["zero_fraction"] > 0.3 and t["sqnr_db"] < s["sqnr_db"]
    e = lowbits_state(WEIGHTS, "down", "8")
    assert e["sqnr_db"] > s["sqnr_db"] + 20  # 8-bit vs 2-bit
    assert lowbits_state(WEIGHTS, "q", "2", "q2_k")["used"] == "q4_0"  # fallback shown
    assert lowbits_state(WEIGHTS, "down", "3", "q2_k")["grid"] == "q3_k"  # grid not of that width
    assert "stored as q4_0" in readout(lowbits_state(WEIGHTS, "q", "2"))
    with pytest.raises(ValueError, match="unknown layer"):
        lowbits_state(WEIGHTS, "nope", "2")
    with pytest.raises(ValueError, match="bits must be"):
        lowbits_state(WEIGHTS, "down", "5")


def test_low_bits_cache_schema():
    p = qlab.cache.load("low_bits")
    assert p["script"] == "scripts/low_bits.py" and p["params"]["window"] == 512 and p["params"]["windows"] == 16
    rows = low_bits_table(p)
    assert rows[0]["kind"] == "reference" and rows[0]["ratio"] == 1.0
    for r in rows:
        assert r["kind"] in {"reference", "uniform", "mixed", "sparse"} and r["perplexity"] > 1
        assert r["bits_per_weight"] == pytest.approx(8 * r["total_bytes"] / 134_515_008, rel=1e-9)
        if r["kind"] == "mixed":
            assert r["total_bytes"] <= r["budget_bytes"]
    with pytest.raises(ValueError, match="no float reference"):
        low_bits_table({"rows": [r for r in p["rows"] if r["kind"] != "reference"]})


def test_panel_redraws_in_place_and_follows_bits():
    """Moving bits redraws the histogram, switches the grid list and shows lowbits_state's readout."""
    from qlab.viz.lowbits import lowbits_panel

    from .panel_probe import one

    panel = lowbits_panel(WEIGHTS, "down")
    img, text = one(panel, "Image"), one(panel, "HTML")
    bits, grid = one(panel, "Dropdown", "bits"), one(panel, "Dropdown", "grid")
    png0, text0 = img.value, text.value
    assert text0 == f"<b>{readout(lowbits_state(WEIGHTS, 'down', '2'))}</b>"
    bits.value = "8"
    assert list(grid.options) == BY_BITS["8"] and grid.value == "q8_0"
    assert text.value == f"<b>{readout(lowbits_state(WEIGHTS, 'down', '8'))}</b>" != text0
    assert img.value != png0
    bits.value = "2"  # remembered: the first picture again
    assert text.value == text0 and img.value == png0
