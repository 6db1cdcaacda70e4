"""Lesson 09: STE / LSQ state against torch autograd on qlab's LSQ quantizer; the QAT cache."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from qlab.quantize.qat import LSQ  # noqa: E402
from qlab.viz.qat import COLUMNS, lsq_init_step, pick, qat_results, result_table, run_qat, ste_state  # noqa: E402


@pytest.mark.parametrize("bits,step", [(2, 0.5), (3, 0.37), (4, 0.2)])
def test_ste_state_matches_autograd_of_qlab_lsq(bits, step):
    s = ste_state(bits, step, n=300)  # no grid point exactly on a rounding tie or the clip
    q = 2 ** (bits - 1) - 1
    lsq = LSQ(q, q)
    with torch.no_grad():
        lsq.step.fill_(step)
        lsq.initialized.fill_(True)
    v = torch.tensor(s["v"], dtype=torch.float32, requires_grad=True)
    out = lsq(v)
    assert np.allclose(out.detach().numpy(), s["forward"], atol=1e-5)
    # per-element input gradient: d sum / d v = STE mask
    out.sum().backward()
    assert np.array_equal(v.grad.numpy(), s["ste_grad"].astype(np.float32))
    # the step gradient: LSQ's = grad scale * sum of ste_state's per-element step gradients
    g = 1.0 / np.sqrt(v.numel() * q)
    assert float(lsq.step.grad) == pytest.approx(g * s["step_grad"].sum(), rel=1e-4, abs=1e-6)
    assert s["clip"] == pytest.approx(q * step) and not s["true_grad"].any()


def test_ste_state_rejects_bad_input():
    with pytest.raises(ValueError):
        ste_state(1)
    with pytest.raises(ValueError):
        ste_state(4, step=0)


def test_lsq_init_step_is_qlabs():
    w = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    lsq = LSQ(7, 7)
    lsq.init_from(torch.from_numpy(w))
    assert float(lsq.step[0]) == pytest.approx(lsq_init_step(w, 4), rel=1e-6)


def test_cache_schema_and_table():
    payload = qat_results()
    rows = payload["rows"]
    assert payload["script"] == "scripts/qat_results.py"
    assert all(set(COLUMNS) <= set(r) for r in rows)
    for bits in payload["params"]["bits"]:
        for method in ("ste", "lsq"):
            for distill in (False, True):
                r = pick(rows, method, bits, distill)
                assert 0 <= r["accuracy"] <= 1 and len(r["loss_per_epoch"]) == r["epochs"]
        assert pick(rows, "ptq (minmax)", bits)["epochs"] == 0
    t = result_table(rows, 0.99).splitlines()
    assert t[0].split()[1:] == [f"W{b}A{b}" for b in payload["params"]["bits"]] and t[-1].startswith("float32")
    with pytest.raises(ValueError, match="cached"):
        pick(rows, "lsq", 3)


@pytest.mark.slow
def test_cache_row_recomputes():
    torch.set_num_threads(1)
    rows = qat_results()["rows"]
    cached = pick(rows, "lsq", 4, False)
    live = run_qat("lsq", 4, False, epochs=cached["epochs"])
    assert live["accuracy"] == pytest.approx(cached["accuracy"], abs=0.01)
    assert np.allclose(live["loss_per_epoch"], cached["loss_per_epoch"], rtol=0.02)


def test_ste_panel_moves_curves_in_place():
    from qlab.viz.qat import ste_panel
    from tests.viz.panel_probe import move

    rows = qat_results()["rows"]
    panel = ste_panel(rows)
    (png0, text0), (png1, text1) = move(panel, "bits", 4)
    assert png1 != png0 and text1 != text0
    s = ste_state(4, 0.5)
    assert f"clipping at ±{s['clip']:.2f}" in text1 and f"W4A4)</b>: accuracy {pick(rows, 'lsq', 4)['accuracy']:.4f}" in text1
    (png2, _), (png3, text3) = move(panel, "method", "ste")  # the cached run changes, not the curves
    assert png3 == png2 and f"accuracy {pick(rows, 'ste', 4)['accuracy']:.4f}" in text3
    (_, _), (png4, _) = move(panel, "bits", 2)
    assert png4 == png0  # the same controls give the same picture
