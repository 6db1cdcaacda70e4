"""Lesson 07 panel state: observer ranges, grid and error checked against numpy."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import qlab  # noqa: E402
from qlab.viz.ptq import (  # noqa: E402
    layer_input,
    observer_state,
    observer_table,
    plot_observer_ranges,
    ptq_accuracy,
    study_table,
)

RNG = np.random.default_rng(0)
# a post-ReLU-like activation: many zeros and a long right tail
X = np.maximum(RNG.standard_t(3, size=(64, 256)), 0).astype(np.float32)


def _fq(x, lo, hi, bits):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = np.float32((np.float32(hi) - np.float32(lo)) / np.float32(2**bits - 1))
    z = np.clip(np.rint(-np.float32(lo) / s), 0, 2**bits - 1)
    q = np.clip(np.rint(x * (np.float32(1) / s)) + z, 0, 2**bits - 1)
    return ((q - z) * s).astype(np.float32), s, z


def test_minmax_state_matches_numpy():
    s = observer_state(X, "minmax", bits=4)
    assert s["lo"] == 0.0 and s["hi"] == pytest.approx(X.max())
    y, scale, z = _fq(X, X.min(), X.max(), 4)
    assert s["scale"] == pytest.approx(float(scale), rel=1e-6) and s["zero_point"] == z
    assert np.allclose(s["decoded"], y, atol=1e-6)
    assert s["mse"] == pytest.approx(float(np.mean((y.astype(np.float64) - X) ** 2)), rel=1e-5)
    assert s["clipped"] == 0.0
    assert s["counts"].sum() == X.size and len(s["edges"]) == len(s["counts"]) + 1


def test_percentile_clips_near_numpy_percentile():
    s = observer_state(X, "percentile", bits=4, percentile=99.0)
    ref = np.percentile(np.abs(X), 99.0, method="inverted_cdf")  # the CDF definition, as a histogram reads it
    assert abs(s["hi"] - ref) <= X.max() / 2048 * 1.01  # within one histogram bin
    assert 0.002 < s["clipped"] < 0.02  # about 1% of values lie above the 99th percentile
    assert s["hi"] < X.max() and s["percentile"] == 99.0


def test_clipping_observers_beat_minmax_on_long_tails():
    rows = {r["observer"]: r for r in observer_table(X, bits=4)}
    assert list(rows) == qlab.quantize.observers.names()
    assert rows["mse"]["mse"] < rows["minmax"]["mse"]
    assert rows["mse"]["hi"] < rows["minmax"]["hi"]
    assert all(set(r) == {"observer", "lo", "hi", "scale", "zero_point", "clipped", "mse", "sqnr_db"}
               for r in rows.values())


def test_layer_input_is_the_hooked_tensor():
    m = qlab.models.load("digits-cnn", progress=False)
    x, _ = qlab.models.digits.load_split("train")
    a = layer_input(m, x[:8], "fc1")
    net = m.model
    with torch.no_grad():
        h = net.pool(torch.relu(net.conv2(torch.relu(net.conv1(x[:8]))))).flatten(1)
    assert a.shape == (8, 512) and np.allclose(a, h.numpy(), atol=1e-6)
    assert np.array_equal(layer_input(m, x[:8], "conv1"), x[:8].numpy())


def test_ptq_accuracy_int8_close_to_float():
    m = qlab.models.load("digits-cnn", progress=False)
    x, _ = qlab.models.digits.load_split("train")
    acc = ptq_accuracy(m, x[:64], "minmax", bits=8)
    assert abs(acc - m.evaluate()["accuracy"]) <= 0.01
    assert m.evaluate()["accuracy"] > 0.95  # the model passed in was not modified


def test_study_table_and_plot():
    rows = [{"data": "float", "size": 0, "accuracy": 0.99}, {"data": "train", "size": 1, "accuracy": 0.9},
            {"data": "train", "size": 4, "accuracy": 0.95}, {"data": "dim", "size": 1, "accuracy": 0.5}]
    t = study_table(rows).splitlines()
    assert "0.9900" in t[0] and "n=1" in t[1] and "n=4" in t[1]
    assert t[3].split() == ["train", "0.9000", "0.9500"] and t[4].split() == ["dim", "0.5000", "-"]
    fig, ax = plt.subplots()
    plot_observer_ranges(ax, X, observer_table(X, 4, ["minmax", "mse"]))
    assert len(ax.get_lines()) == 2
    plt.close(fig)


def test_observer_panel_moves_range_in_place():
    from qlab.viz.live_parts1 import one_thread
    from qlab.viz.ptq import observer_panel
    from tests.viz.panel_probe import move

    m = qlab.models.load("digits-cnn", progress=False)
    x, _ = qlab.models.digits.load_split("train")
    calib = x[:32]
    a = layer_input(m, calib, "fc1")
    panel = observer_panel(m, calib, a, bits=4)
    (png0, text0), (png1, text1) = move(panel, "observer", "minmax")
    s = observer_state(a, "minmax", 4)
    assert png1 != png0 and text1 != text0
    assert f"range [{s['lo']:.4g}, {s['hi']:.4g}], scale {s['scale']:.4g}" in text1
    with one_thread():  # as the panel computes it (the summation order may depend on the thread count)
        acc = ptq_accuracy(m, calib, "minmax", 4)
    assert f"model accuracy {acc:.4f}</b>" in text1
    (_, _), (png2, text2) = move(panel, "observer", "percentile")
    assert png2 == png0 and text2 == text0
