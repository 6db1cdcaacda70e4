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
