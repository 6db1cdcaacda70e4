import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from qlab.analysis.error import sqnr_db  # noqa: E402
from qlab.models import minilm_weights  # noqa: E402
from qlab.viz.linear import linear_state, plot_grid, readout  # noqa: E402

W = minilm_weights("encoder.layer.1.attention.self.value.weight")


@pytest.mark.parametrize("symmetric", [True, False])
def test_linear_state_against_torch(symmetric):
    s = linear_state(W, 4, symmetric, clip=0.6)
    ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(W), s["scale"], s["zero_point"], s["qmin"],
                                                s["qmax"]).numpy()
    assert np.array_equal(s["decoded"], ref)
    # every decoded value is one of the listed levels; the levels are 2**bits (or 2**bits - 1) apart by one scale
    assert np.isin(np.unique(s["decoded"]), s["levels"]).all()
    assert len(s["levels"]) == (15 if symmetric else 16)
    assert np.allclose(np.diff(s["levels"]), s["scale"])
    assert s["sqnr_db"] == pytest.approx(sqnr_db(W, ref))
    assert s["nbytes"] == W.size // 2 + 4 + (0 if symmetric else 1)
    assert "SQNR" in readout(s)


def test_plot_grid_draws():
    s = linear_state(W, 3)
    fig, ax = plt.subplots()
    plot_grid(ax, W, s["levels"])
    assert len(ax.lines) == 7
    plt.close(fig)


def test_panel_moves_redraw_the_picture_and_the_readout():
    import ipywidgets as w

    from qlab.viz.linear import linear_panel

    panel = linear_panel(W, bits=4)
    bits = panel.children[0].children[0]
    text, image = panel.children[1], panel.children[2]
    assert isinstance(image, w.Image) and image.value[:4] == b"\x89PNG"
    before = (text.value, image.value)
    bits.value = 3
    assert text.value != before[0] and "3-bit" in text.value
    assert image.value != before[1]
