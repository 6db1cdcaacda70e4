"""The lesson-6 panel states against independent numpy computations (synthetic outlier data)."""

from __future__ import annotations

import numpy as np
import pytest

from qlab.viz.outliers import int8_decomposition_state, smoothquant_state


def _layer(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs with two massive channels (as in LLMs) and a weight with ordinary columns."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 32)).astype(np.float32)
    x[:, [3, 17]] *= 40.0
    w = (rng.standard_normal((16, 32)) * 0.1).astype(np.float32)
    return x, w


def _w8a8_numpy(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """int8 weights symmetric per row (max/127), int8 input asymmetric per tensor (min-max, 255 steps)."""
    sw = np.abs(w).max(1, keepdims=True) / 127
    wq = np.clip(np.rint(w / sw), -127, 127) * sw
    lo, hi = min(x.min(), 0.0), max(x.max(), 0.0)
    s = (hi - lo) / 255
    zp = np.rint(-128 - lo / s)
    xq = (np.clip(np.rint(x / s) + zp, -128, 127) - zp) * s
    return xq.astype(np.float64) @ wq.T.astype(np.float64)


def test_smoothquant_state_matches_numpy() -> None:
    x, w = _layer()
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    rel = lambda y: float(((y - ref) ** 2).sum() / (ref**2).sum())  # noqa: E731
    for alpha in (0.0, 0.5, 0.8):
        st = smoothquant_state(x, w, alpha)
        a, wm = np.abs(x).max(0), np.abs(w).max(0)
        s = a**alpha / wm ** (1 - alpha)
        np.testing.assert_allclose(st["s"], s, rtol=1e-5)
        np.testing.assert_allclose(st["act_absmax_smoothed"], a / s, rtol=1e-5)
        np.testing.assert_allclose(st["w_absmax_smoothed"], wm * s, rtol=1e-5)
        assert st["err_plain"] == pytest.approx(rel(_w8a8_numpy(x, w)), rel=1e-2)
        assert st["err_smooth"] == pytest.approx(rel(_w8a8_numpy(x / s, w * s)), rel=1e-2)
    # difficulty moves: alpha=0.5 flattens the activations and beats plain W8A8 on outlier data
    st = smoothquant_state(x, w, 0.5)
    assert st["act_ratio_smoothed"] < st["act_ratio"] / 4 and st["w_ratio_smoothed"] > st["w_ratio"]
    assert st["err_smooth"] < st["err_plain"] / 4


def test_int8_decomposition_state() -> None:
    x, w = _layer(1)
    x[:, 3] = np.clip(x[:, 3], -5.9, 5.9)  # column 3 stays below the threshold, 17 does not
    st = int8_decomposition_state(x, w, 6.0)
    expect = np.flatnonzero((np.abs(x.astype(np.float16)) >= 6).any(0))
    np.testing.assert_array_equal(st["columns"], expect)
    assert 17 in st["columns"] and 3 not in st["columns"]
    assert st["err_llm_int8"] < st["err_vectorwise"] / 5


def test_bad_input() -> None:
    x, w = _layer()
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        smoothquant_state(x, w, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        smoothquant_state(_layer()[0], w, 1.5)


def test_results_table_schema() -> None:
    """The committed cache of scripts/llm_outliers.py: schema, the float row, sane perplexities."""
    import qlab.cache
    from qlab.viz.outliers import results_table

    payload = qlab.cache.load("llm_outliers")
    assert payload["script"] == "scripts/llm_outliers.py" and payload["params"]["windows"] == 16
    rows = results_table(payload)
    names = [r["name"] for r in rows]
    assert names[0] == "float32" and rows[0]["vs_float"] == 1.0
    assert all(np.isfinite(r["perplexity"]) and r["perplexity"] > 1 for r in rows)
    assert all(r["vs_float"] > 0.98 for r in rows)  # quantization does not beat float by more than noise
    for r in payload["rows"]["outliers"]:
        assert 0 <= r["columns"] <= r["in_features"] and r["max_per_call"] <= r["columns"]
    with pytest.raises(ValueError, match="no perplexity rows"):
        results_table({"rows": {"perplexity": []}, "script": "scripts/llm_outliers.py"})


@pytest.mark.parametrize("alpha", [0.0, 0.35, 0.5, 1.0])
def test_ranges_from_maxima_equal_the_smoothed_tensors_bitwise(alpha: float) -> None:
    """The panel's shortcut: max|X/s| = max|X|/s and max|W s| = max|W| s, exactly, in float32."""
    import torch

    from qlab.quantize.smoothquant import smoothing_factors
    from qlab.viz.outliers import ranges_from_maxima

    x, w = (torch.from_numpy(v) for v in _layer(3))
    st = ranges_from_maxima(x.abs().amax(0), w.abs().amax(0), alpha)
    s = smoothing_factors(x.abs().amax(0), w, alpha)
    assert np.array_equal(st["s"], s.numpy())
    assert np.array_equal(st["act_absmax_smoothed"], (x / s).abs().amax(0).numpy())
    assert np.array_equal(st["w_absmax_smoothed"], (w * s).abs().amax(0).numpy())


def test_smoothquant_panel_moves_lines_in_place() -> None:
    from qlab.viz.outliers import smoothquant_panel
    from tests.viz.panel_probe import move

    x, w = _layer()
    panel = smoothquant_panel(x, w, alpha=0.5)
    (png0, text0), (png1, text1) = move(panel, "alpha", 0.8)
    st = smoothquant_state(x, w, 0.8)
    assert png1 != png0 and text1 != text0
    assert f"plain {st['err_plain']:.3g}, smoothed {st['err_smooth']:.3g}" in text1
    assert f"activations {st['act_ratio']:.1f} -> {st['act_ratio_smoothed']:.1f}" in text1
    (_, _), (png2, text2) = move(panel, "alpha", 0.5)
    assert png2 == png0 and text2 == text0
