"""Weight statistics against scipy / direct numpy on SmolLM2's real weights."""
# ruff: noqa: F811  (test arguments named after the imported fixtures)

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from qlab.analysis.weights import select, tensor_stats, weight_stats, weight_table
from tests.quantize._fixtures import single_thread, smol  # noqa: F401  (pytest fixtures)


def test_tensor_stats_against_scipy(smol):
    w = smol.model.model.layers[0].self_attn.o_proj.weight.detach().numpy()
    s = tensor_stats(w, k=3.0)
    x = w.astype(np.float64).ravel()
    assert s["mean"] == pytest.approx(x.mean(), rel=1e-9, abs=1e-12)
    assert s["std"] == pytest.approx(x.std(), rel=1e-6)
    assert s["kurtosis"] == pytest.approx(stats.kurtosis(x, fisher=True), rel=1e-5)
    assert s["kurtosis"] > 3  # heavy tails: why per-block scales pay off
    assert s["outlier_fraction"] == np.mean(np.abs(w) > 3.0 * s["std"])
    assert s["min"] == w.min() and s["max"] == w.max() and s["absmax"] == np.abs(w).max()
    np.testing.assert_array_equal(s["channel_absmax"], np.abs(w).max(axis=1))
    np.testing.assert_array_equal(s["input_channel_absmax"], np.abs(w).max(axis=0))
    assert s["channel_ratio"] == pytest.approx(s["channel_absmax"].max() / np.median(s["channel_absmax"]))
    g = tensor_stats(np.random.default_rng(0).standard_normal(200_000).astype(np.float32))
    assert abs(g["kurtosis"]) < 0.05 and g["outlier_fraction"] == pytest.approx(0.0027, abs=6e-4)


def test_weight_stats_every_tensor_once(smol):
    rows = weight_stats(smol, include="*layers.0.*")
    assert [r["name"].rsplit(".", 1)[-1] for r in rows] == ["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"]  # fmt: skip
    assert rows[-1]["shape"] == (576, 1536) and rows[-1]["channel_absmax"].shape == (576,)
    table = weight_table(rows, k=3)
    assert "kurtosis" in table and "down_proj" in table
    assert len(select(rows, "*_proj")) == 7 and select(rows, "*v_proj")[0]["params"] == 192 * 576
