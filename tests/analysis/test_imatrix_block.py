"""qlab.analysis.imatrix_block on a real SmolLM2 matrix with a real importance matrix.

References: llama.cpp's Q4_0 rule without an imatrix (``quantize_row_q4_0_ref``: ``d = max / -8``
in fp16, recomputed here), gguf-py's ``dequantize`` of the very bytes, and the objective the
imatrix search minimises (``make_qx_quants``: the weighted squared error with
``w = imatrix * sqrt(sigma2 + x^2)``), which must come out lower than the fixed rule's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qlab.analysis.imatrix_block import block_choice, layer_errors, llama_weights
from qlab.eval import calibration_text
from qlab.formats import get
from qlab.quantize import collect_imatrix
from tests.quantize._fixtures import single_thread, smol  # noqa: F401

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def layer(smol: Any) -> tuple[np.ndarray, np.ndarray]:  # noqa: F811
    imx = collect_imatrix(smol, calibration_text(8000), window=64, windows=2, progress=False)
    w = smol.model.model.layers[2].mlp.down_proj.weight.detach().float().numpy()
    return w, imx.vector("blk.2.ffn_down.weight")


def test_block_scales_and_errors(layer: tuple[np.ndarray, np.ndarray]) -> None:
    w, v = layer
    b = block_choice(w, v, row=7, block=11, fmt="q4_0")
    x = w[7, 352:384]
    np.testing.assert_array_equal(b.x, x)
    big = x[np.argmax(np.abs(x))]
    assert b.scale_plain == float(np.float16(big / -8))  # llama.cpp's rule without imatrix
    raw = get("q4_0").encode(w[7:8], imatrix=v).to_bytes()
    ref = gguf.quants.dequantize(np.frombuffer(raw, np.uint8), gguf.GGMLQuantizationType.Q4_0).reshape(-1)
    np.testing.assert_array_equal(b.y_imatrix, ref[352:384])
    codes = b.y_imatrix / np.float32(b.scale_imatrix)
    assert np.allclose(codes, np.round(codes)) and codes.min() >= -8 and codes.max() <= 7
    np.testing.assert_allclose(b.weights, v[352:384] * np.sqrt((w[7].astype(np.float64) ** 2).mean() + x.astype(np.float64) ** 2))
    e = b.errors()
    assert e["weighted_imatrix"] <= e["weighted_plain"]


def test_layer_search_beats_fixed_rule(layer: tuple[np.ndarray, np.ndarray]) -> None:
    w, v = layer
    out = layer_errors(w[:64], v, "q4_0")
    assert out["plain"].shape == (64, w.shape[1] // 32)
    better = out["imatrix"] <= out["plain"] * (1 + 1e-6)  # fp16 rounding of d: equal at worst, in practice
    assert better.mean() > 0.98 and out["imatrix"].sum() < 0.9 * out["plain"].sum()
    assert (out["scale_plain"] != out["scale_imatrix"]).mean() > 0.5  # the search moves most scales
    np.testing.assert_allclose(llama_weights(w[0], v), v * np.sqrt((w[0].astype(np.float64) ** 2).mean() + w[0].astype(np.float64) ** 2))


def test_arguments(layer: tuple[np.ndarray, np.ndarray]) -> None:
    w, v = layer
    with pytest.raises(ValueError, match="fmt must be one of"):
        block_choice(w, v, 0, 0, fmt="q4_k")
    with pytest.raises(ValueError, match="one value per column"):
        block_choice(w, v[:10], 0, 0)
    with pytest.raises(ValueError, match="row must be in"):
        block_choice(w, v, w.shape[0], 0)
