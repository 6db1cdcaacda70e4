"""Lesson 17's panel state functions: the Hadamard lowers the spikiness of outlier activations and
raises their int4 SQNR; low-rank bytes and errors equal the direct computations."""

import numpy as np
import pytest
import torch

from qlab.quantize import lowrank
from qlab.viz.rotations import cache_table, lowrank_readout, lowrank_state, rotation_state


def acts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 64)).astype(np.float32)
    x[:, 5] *= 40  # one outlier channel, as in LLM activations
    return x


def test_rotation_spreads_an_outlier_channel():
    plain, rot = rotation_state(acts(), 4, False), rotation_state(acts(), 4, True)
    assert plain["max_over_rms"] > 5 > rot["max_over_rms"]
    assert rot["sqnr_db"] > plain["sqnr_db"] + 6
    # orthogonal: same energy per token
    np.testing.assert_allclose((rot["values"] ** 2).sum(1), (acts().astype(np.float64) ** 2).sum(1), rtol=1e-5)


def test_lowrank_state_bytes_and_errors():
    w = np.random.default_rng(1).normal(size=(64, 96)).astype(np.float32)
    s = lowrank_state(w, 8, 3)
    assert s["fp16_bytes"] == 2 * 64 * 96
    assert s["lowrank"]["nbytes"] == 2 * 8 * (64 + 96)
    assert s["both"]["nbytes"] == s["quantized"]["nbytes"] + s["lowrank"]["nbytes"]
    assert s["both"]["sqnr_db"] > s["quantized"]["sqnr_db"]
    lr = lowrank.truncated_svd(torch.from_numpy(w), rank=8)
    err = float(((w - lr.product().numpy()) ** 2).mean())
    assert s["lowrank"]["mse"] == pytest.approx(err, rel=1e-6)
    assert "bytes" in lowrank_readout(s) and "quantized" not in lowrank_state(w, 4, None)


def test_validation():
    with pytest.raises(ValueError, match="tokens, features"):
        rotation_state(np.zeros(4), 4, True)
    with pytest.raises(ValueError, match="bits"):
        rotation_state(acts(), 7, True)


def test_cache_table_filters_and_formats():
    rows = [{"section": "a", "method": "rtn", "kl": 0.31234}, {"section": "b", "method": "hqq", "kl": None},
            {"section": "a", "method": "hqq"}]
    t = cache_table(rows, [("method", "method", ""), ("kl", "KL", ".3f")], section="a").splitlines()
    assert len(t) == 3 and t[1].split() == ["rtn", "0.312"] and t[2].split() == ["hqq", "-"]


def test_lowrank_memo_equals_lowrank_state():
    """The panel's memo (SVDs kept, factors rebuilt per rank) gives lowrank_state's numbers: exactly,
    and to 1e-6 dB with the fast statistics; ranks beyond the kept vectors are refused."""
    from qlab.viz.rotations import LowrankMemo

    rng = np.random.default_rng(2)
    weights = {"a": rng.normal(size=(64, 96)).astype(np.float32), "b": rng.laplace(size=(40, 64)).astype(np.float32)}
    memo = LowrankMemo(weights, max_rank=32)
    for layer, rank, bits in [("a", 8, 3), ("a", 24, 3), ("a", 0, None), ("b", 16, 2), ("a", 8, 4)]:
        want = lowrank_state(weights[layer], rank, bits)
        assert memo.state(layer, rank, bits) == want
        fast = memo.state(layer, rank, bits, fast=True)
        for k in ("lowrank", "quantized", "both"):
            if k in want:
                assert fast[k]["nbytes"] == want[k]["nbytes"]
                assert fast[k]["sqnr_db"] == pytest.approx(want[k]["sqnr_db"], abs=1e-6)
    assert lowrank_readout(memo.state("a", 8, 3, fast=True)) == lowrank_readout(lowrank_state(weights["a"], 8, 3))
    with pytest.raises(ValueError, match="rank must be an int in 0..32"):
        memo.state("a", 40, 3)
    with pytest.raises(ValueError, match="unknown layer"):
        memo.state("c", 8, 3)


def test_lowrank_panel_follows_rank():
    from qlab.viz.rotations import lowrank_panel

    from .panel_probe import one

    w = {"a": np.random.default_rng(3).normal(size=(64, 96)).astype(np.float32)}
    panel = lowrank_panel(w)
    out, rank = one(panel, "HTML"), one(panel, "IntSlider", "rank")
    assert lowrank_readout(lowrank_state(w["a"], 16, 3)) in out.value
    rank.value = 32
    assert lowrank_readout(lowrank_state(w["a"], 32, 3)) in out.value


def test_rotation_panel_redraws_in_place():
    """Moving bits redraws the picture and the readout shows rotation_state's figures for both bases."""
    from qlab.viz.rotations import rotation_panel

    from .panel_probe import one

    x = acts()
    panel = rotation_panel({"one": x, "two": x[:, :32] * 3})
    img, text, bits = one(panel, "Image"), one(panel, "HTML"), one(panel, "Dropdown", "bits")
    png0, text0 = img.value, text.value
    bits.value = 3
    assert img.value != png0 and text.value != text0
    for rot in (False, True):
        s = rotation_state(x, 3, rot)
        assert f"max|x|/rms {s['max_over_rms']:.1f}, SQNR {s['sqnr_db']:.1f} dB" in text.value
    one(panel, "Dropdown", "layer").value = "two"
    assert f"SQNR {rotation_state(x[:, :32] * 3, 3, True)['sqnr_db']:.1f} dB" in text.value
    one(panel, "Dropdown", "layer").value = "one"
    bits.value = 4
    assert text.value == text0 and img.value == png0


def test_rotating_once_gives_every_bits_the_same_figures():
    """The panel rotates each layer once and quantizes the rotated values per bits: exactly rotation_state's figures."""
    from qlab.viz.rotations import rotation_summary

    x = acts()
    rotated = rotation_state(x, 8, True)["values"]
    for b in (8, 6, 4, 3):
        once, direct = rotation_summary(rotated, b, False), rotation_summary(x, b, True)
        assert np.array_equal(once["curve"], direct["curve"])
        assert (once["max_over_rms"], once["sqnr_db"]) == (direct["max_over_rms"], direct["sqnr_db"])
