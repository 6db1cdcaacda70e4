import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import qlab  # noqa: E402
from qlab.viz import plot_error_histogram, tour_state  # noqa: E402
from qlab.viz.tour import readout  # noqa: E402

X = np.random.default_rng(0).laplace(size=(16, 512)).astype(np.float32)


def test_tour_state_follows_bits_and_format():
    s4 = tour_state(X, 4)
    assert s4["format"] == s4["options"][0] and "q4_0" in s4["options"]
    s = tour_state(X, 4, "q4_0")
    assert s["format"] == "q4_0"
    assert np.array_equal(s["decoded"], qlab.roundtrip(X, "q4_0"))
    assert s["nbytes"] == X.size // 32 * 18 and s["bits_per_weight"] == 4.5
    s8 = tour_state(X, 8, "q8_0")
    assert s8["sqnr_db"] > s["sqnr_db"] + 15  # 4 more bits, ~24 dB in theory
    # a format name that does not match the slider falls back to the first of that width
    assert tour_state(X, 8, "q4_0")["format"] == tour_state(X, 8)["options"][0]
    assert "SQNR" in readout(s) and "q4_0" in readout(s)


def test_tour_state_rejects_impossible_width():
    with pytest.raises(ValueError, match="bits per weight"):
        tour_state(X, 9)


def test_error_histogram_counts_every_value():
    fig, ax = plt.subplots()
    y = qlab.roundtrip(X, "int4")
    plot_error_histogram(ax, X, y, label="int4")
    counts = sum(p.get_height() for p in ax.patches)
    assert counts == X.size and ax.get_title() == "int4"
    plt.close(fig)


def test_error_histogram_shared_range():
    fig, ax = plt.subplots()
    plot_error_histogram(ax, X, qlab.roundtrip(X, "q8_0"), lim=0.5)
    left = min(p.get_x() for p in ax.patches)
    right = max(p.get_x() + p.get_width() for p in ax.patches)
    assert np.isclose(left, -0.5) and np.isclose(right, 0.5)
    plt.close(fig)


def test_error_histogram_linear_axis():
    fig, ax = plt.subplots()
    plot_error_histogram(ax, X, qlab.roundtrip(X, "int4"), log=False)
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
    plt.close(fig)


def test_formats_tour_panel_moves_histogram_in_place():
    from qlab.viz.tour import formats_tour
    from tests.viz.panel_probe import move

    panel = formats_tour(X, bits=4)
    (png0, text0), (png1, text1) = move(panel, "bits", 8)
    first8 = tour_state(X, 8)
    assert png1 != png0 and text1 != text0 and readout(first8) in text1
    (_, _), (png2, text2) = move(panel, "format", "q8_0")
    s = tour_state(X, 8, "q8_0")
    assert readout(s) in text2 and (png2 != png1) == (s["format"] != first8["format"])
    (_, _), (png3, text3) = move(panel, "bits", 4)
    assert png3 == png0 and text3 == text0  # back to the first setting: the same picture and readout
