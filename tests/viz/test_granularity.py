import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qlab.models import minilm_weights  # noqa: E402
from qlab.viz.granularity import granularity_state, plot_granularity, readout  # noqa: E402

W = minilm_weights("encoder.layer.1.attention.self.value.weight")


def _fake_quant(x, bits, groups):
    """Independent symmetric min-max quantization with one scale per row of x.reshape(groups, -1)."""
    g = x.astype(np.float64).reshape(groups, -1)
    qmax = 2 ** (bits - 1) - 1
    s = np.abs(g).max(axis=1, keepdims=True) / qmax
    return (np.clip(np.round(g / s), -qmax, qmax) * s).reshape(x.shape)


def _sqnr(x, y, mask):
    return 10 * np.log10(np.sum(x[mask].astype(np.float64) ** 2) / np.sum((x[mask] - y[mask]) ** 2))


@pytest.mark.parametrize("bits", [4, 8])
def test_state_against_independent_quantizer(bits):
    s = granularity_state(W, bits, factor=20.0, group_size=32)
    i, j = s["index"]
    x = W.copy()
    x[i, j] = 20 * np.abs(W).max()
    mask = np.ones(x.shape, bool)
    mask[i, j] = False
    rows = {r["granularity"]: r for r in s["rows"]}
    for label, groups in [("tensor", 1), ("channel", 384), ("group 128", W.size // 128), ("group 32", W.size // 32)]:
        expect = _sqnr(x, _fake_quant(x, bits, groups), mask)
        assert rows[label]["sqnr_rest_db"] == pytest.approx(expect, abs=0.02), label
        assert rows[label]["scales"] == groups
        assert rows[label]["nbytes"] == W.size * bits // 8 + 4 * groups
    assert rows["tensor"]["sqnr_rest_db"] < rows["channel"]["sqnr_rest_db"] < rows["group 32"]["sqnr_rest_db"]
    assert "outlier" in readout(s)


def test_no_outlier_and_plot():
    s = granularity_state(W, 4, factor=1.0, group_size=128)
    assert s["index"] is None and [r["granularity"] for r in s["rows"]] == ["tensor", "channel", "group 128"]
    assert all(r["sqnr_db"] == r["sqnr_rest_db"] for r in s["rows"])
    fig, ax = plt.subplots()
    plot_granularity(ax, s)
    assert len(ax.patches) == 3
    plt.close(fig)


def test_granularity_panel_moves_bars_in_place():
    from qlab.viz.granularity import granularity_panel
    from tests.viz.panel_probe import move

    x = W[:64]
    panel = granularity_panel(x, bits=4)
    (png0, text0), (png1, text1) = move(panel, "outlier ×max", 10.0)
    assert png1 != png0 and text1 == "<pre>" + readout(granularity_state(x, 4, 10.0, 32)) + "</pre>" != text0
    (_, _), (png2, text2) = move(panel, "group", 128)  # one bar fewer
    assert png2 != png1 and text2 == "<pre>" + readout(granularity_state(x, 4, 10.0, 128)) + "</pre>"
