"""Lesson 08 panel state: per-tensor vs per-token dynamic quantization against numpy."""

import numpy as np
import pytest

from qlab.viz.dynamic import token_state


def _numpy_fq(x, bits, axis):
    lo = np.minimum(x.min(axis=axis, keepdims=True), 0).astype(np.float32)
    hi = np.maximum(x.max(axis=axis, keepdims=True), 0).astype(np.float32)
    s = ((hi - lo) / np.float32(2**bits - 1)).astype(np.float32)
    z = np.clip(np.rint(-lo / s), 0, 2**bits - 1)
    q = np.clip(np.rint(x * (np.float32(1) / s)) + z, 0, 2**bits - 1)
    return ((q - z) * s).astype(np.float32), s


RNG = np.random.default_rng(0)
# 40 tokens of 64 features, one token 50x louder than the others (an "outlier token")
X = RNG.normal(size=(40, 64)).astype(np.float32)
X[7] *= 50


@pytest.mark.parametrize("bits", [8, 4])
def test_token_and_tensor_match_numpy(bits):
    tok = token_state(X, bits, "token")
    ref, s = _numpy_fq(X, bits, axis=1)
    assert np.mean(~np.isclose(tok["decoded"], ref, rtol=1e-5, atol=1e-6)) < 1e-3
    assert np.allclose(tok["token_scale"], s[:, 0], rtol=1e-6)
    ten = token_state(X, bits, "tensor")
    ref_t, s_t = _numpy_fq(X, bits, axis=None)
    assert np.mean(~np.isclose(ten["decoded"], ref_t, rtol=1e-5, atol=1e-6)) < 1e-3
    assert np.allclose(ten["token_scale"], float(s_t.ravel()[0]), rtol=1e-6)
    err = ((ref_t.astype(np.float64) - X) ** 2).mean()
    assert ten["mse"] == pytest.approx(err, rel=1e-3)


def test_outlier_token_ruins_per_tensor_scale():
    tok, ten = token_state(X, 8, "token"), token_state(X, 8, "tensor")
    quiet = np.arange(len(X)) != 7
    # per tensor, the quiet tokens share the loud token's step and lose ~34 dB (log10(50) * 20)
    assert np.median(tok["token_sqnr_db"][quiet] - ten["token_sqnr_db"][quiet]) > 25
    assert tok["levels_used"] > 4 * ten["levels_used"]
    assert tok["token_absmax"][7] == pytest.approx(np.abs(X[7]).max())


def test_bad_granularity_and_3d_input():
    with pytest.raises(ValueError, match="granularity"):
        token_state(X, 8, "channel")
    s = token_state(X.reshape(4, 10, 64), 8, "token")
    assert s["decoded"].shape == (40, 64)


def test_token_panel_moves_lines_in_place():
    from qlab.viz.dynamic import token_panel
    from tests.viz.panel_probe import move

    x = np.random.default_rng(1).standard_normal((40, 64)).astype(np.float32)
    x[7] *= 30  # one outlier token
    panel = token_panel(x, bits=8)
    (png0, text0), (png1, text1) = move(panel, "bits", 4)
    s, o = token_state(x, 4, "tensor"), token_state(x, 4, "token")
    assert png1 != png0 and text1 != text0
    assert f"SQNR {s['sqnr_db']:.2f} dB overall (per token: {o['sqnr_db']:.2f} dB)" in text1
    (_, _), (png2, text2) = move(panel, "scale per", "token")
    assert png2 != png1 and f"<b>per token</b>, int4: SQNR {o['sqnr_db']:.2f} dB" in text2
