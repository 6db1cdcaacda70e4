"""Lesson 16's block panel: its state function agrees with qlab.analysis.imatrix_block and its
plot draws the block (real qlab encoders; the encoders themselves are checked against llama.cpp
in tests/formats/gguf/test_imatrix.py)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qlab.analysis.imatrix_block import block_choice  # noqa: E402
from qlab.viz.imatrix_block import block_state, plot_block  # noqa: E402


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    w = {"blk.0.ffn_down.weight": rng.standard_normal((8, 256)).astype(np.float32)}
    imp = {"blk.0.ffn_down.weight": np.exp(rng.normal(0, 2, 256)).astype(np.float32)}
    return w, imp


def test_state_is_block_choice(data):
    w, imp = data
    s = block_state(w, imp, "blk.0.ffn_down.weight", 3, 5, "q4_0")
    b = block_choice(w["blk.0.ffn_down.weight"], imp["blk.0.ffn_down.weight"], 3, 5, "q4_0")
    assert s["choice"].scale_plain == b.scale_plain and s["choice"].scale_imatrix == b.scale_imatrix
    assert np.array_equal(s["choice"].y_imatrix, b.y_imatrix)
    e = b.errors()
    assert s["errors"] == e and e["weighted_imatrix"] <= e["weighted_plain"]  # the search minimises the weighted error
    assert f"{b.scale_plain:+.5f}" in s["text"] and "row 3 block 5" in s["text"]


def test_bad_layer_and_block(data):
    w, imp = data
    with pytest.raises(ValueError, match="has no weight or importance"):
        block_state(w, imp, "blk.9.ffn_down.weight", 0, 0)
    with pytest.raises(ValueError, match="block in"):
        block_state(w, imp, "blk.0.ffn_down.weight", 0, 8)


def test_plot_block(data):
    w, imp = data
    s = block_state(w, imp, "blk.0.ffn_down.weight", 1, 2, "iq4_nl")
    fig, ax = plt.subplots()
    plot_block(ax, s["choice"])
    assert len(ax.patches) == 32 and len(ax.get_lines()) == 3
    assert np.array_equal(ax.get_lines()[2].get_ydata(), s["choice"].y_imatrix)
    plt.close(fig)


def test_panel_moves_in_place(data):
    """Moving the block slider shows block_state's readout for the new block and a new picture;
    moving back gives the first picture again, byte for byte (nothing left over from the move)."""
    from qlab.viz.imatrix_block import block_panel

    from .panel_probe import one

    w, imp = data
    panel = block_panel(w, imp, row=3, block=5)
    img, text, blk = one(panel, "Image"), one(panel, "HTML"), one(panel, "IntSlider", "block")
    png0, text0 = img.value, text.value
    assert text0 == f"<b>{block_state(w, imp, 'blk.0.ffn_down.weight', 3, 5)['text']}</b>"
    blk.value = 6
    assert text.value == f"<b>{block_state(w, imp, 'blk.0.ffn_down.weight', 3, 6)['text']}</b>"
    assert img.value != png0
    one(panel, "Dropdown", "type").value = "iq4_nl"
    assert ", iq4_nl:" in text.value
    one(panel, "Dropdown", "type").value = "q4_0"
    blk.value = 5
    assert text.value == text0 and img.value == png0
