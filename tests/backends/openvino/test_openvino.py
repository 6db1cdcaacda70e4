"""OpenVINO (CPU plugin) and NNCF against qlab's simulations of the same schemes.

* conversion: the IR (from the ONNX export) runs like PyTorch for any batch / sentence length at
  f32 precision; bf16 (the CPU plugin's default here) moves MiniLM's hidden states measurably;
* weight compression: on a real MiniLM Linear, the codes, f16 scales and zero points NNCF stores in
  the IR are qlab's simulation of NNCF's rule (:mod:`qlab.backends.openvino.simulate`) up to rare
  ties, and the CPU plugin's output equals ``x @ simulate(W)`` to float rounding -- ten times
  closer than to the float layer, so the check can fail;
* static int8 on digits-cnn: FakeQuantize graph, int8 weights, accuracy within a point of fp32;
* the plugin's default dynamic int8 quantization of the activations of such a layer is measurable;
* clear errors on bad arguments and bad batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qlab.backends import openvino as ovb
from qlab.backends.compare import batches, compare, run_batch, tokenize
from qlab.eval import accuracy, wikitext_sentences


def test_float_ir_runs_like_torch(minilm: Any, digits: Any, workdir: Path) -> None:
    f = ovb.float_model(minilm, directory=workdir)
    assert f.path.suffix == ".xml" and f.path.with_suffix(".bin").is_file()
    assert f.disk_bytes == f.path.stat().st_size + f.path.with_suffix(".bin").stat().st_size
    for sents in (wikitext_sentences(1), wikitext_sentences(5)):
        b = tokenize(minilm, sents)
        with torch.inference_mode():
            ref = run_batch(minilm.model, b).last_hidden_state
        assert (run_batch(f.model, b).last_hidden_state - ref).abs().max() < 1e-4
    bf16 = ovb.float_model(minilm, "bf16", directory=workdir)
    b = tokenize(minilm, wikitext_sentences(5))
    with torch.inference_mode():
        ref = run_batch(minilm.model, b).last_hidden_state
    assert (run_batch(bf16.model, b).last_hidden_state - ref).abs().max() > 1e-3  # bf16 arithmetic shows
    d = ovb.float_model(digits, directory=workdir)
    x = batches(digits, 7, 7, "eval")[0]
    with torch.inference_mode():
        assert (d.model(x) - digits.model(x)).abs().max() < 1e-4


@pytest.fixture(scope="module")
def layer(minilm: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """A real MiniLM Linear (384 -> 1536) as an OpenVINO MatMul with its weight (in, out) as in the
    ONNX export, and real activations entering it (8 padded sentences)."""
    import openvino as ov
    from openvino import opset13 as ops

    lin = minilm.model.encoder.layer[0].intermediate.dense
    got: dict[str, torch.Tensor] = {}
    h = lin.register_forward_hook(lambda _m, i, _o: got.update(x=i[0].detach().clone()))
    with torch.inference_mode():
        run_batch(minilm.model, batches(minilm, 8, 8, "eval")[0])
    h.remove()
    w = lin.weight.detach().numpy().T.copy()  # (in, out)
    x = ops.parameter([-1, -1, w.shape[0]], np.float32, name="x")
    model = ov.Model([ops.matmul(x, ops.constant(w), False, False)], [x])
    return got["x"].numpy(), w, model


@pytest.mark.parametrize(("mode", "group"), [("int8_asym", -1), ("int8_sym", -1), ("int4_asym", 32),
                                             ("int4_sym", 32), ("int4_asym", 128)])
def test_weight_compression_matches_qlab_simulation(layer: Any, mode: str, group: int) -> None:
    x, w, model = layer
    q = ovb.compress_weights_ir(model, mode, group, all_layers=True)
    (got,) = ovb.compressed_weights(q).values()
    sim = ovb.compress(w, mode, group)
    assert got.codes.shape == sim.codes.shape and got.scale.shape == sim.scale.shape
    np.testing.assert_allclose(got.scale.astype(np.float32), sim.scale.astype(np.float32), rtol=1e-3)
    diff = np.abs(got.codes.astype(np.int32) - sim.codes.astype(np.int32))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999, (diff.max(), (diff != 0).sum())  # rounding ties only
    if sim.zero_point is None:
        assert got.zero_point is None
    else:
        assert np.array_equal(got.zero_point.astype(np.int32), sim.zero_point.astype(np.int32))
    y = ovb.compile_ir(q, threads=1, dynamic_quantization=0)(x)[0]  # weights only (no int8 activations)
    y_sim = x @ ovb.simulate(w, mode, group)
    err_sim = np.abs(y - y_sim).max() / np.abs(y_sim).max()
    err_float = np.abs(y - x @ w).max() / np.abs(y_sim).max()
    assert err_sim < 2e-3 and err_float > 10 * err_sim, (err_sim, err_float)
    assert err_sim < {"8": 5e-4, "4": 2e-3}[mode[3]]  # f16 decode math vs the plugin's f32
    if mode == "int8_asym":  # the plugin's default also quantizes the activations (groups of 32)
        y_dyn = ovb.compile_ir(q, threads=1)(x)[0]
        assert np.abs(y_dyn - y_sim).max() / np.abs(y_sim).max() > 10 * err_sim


def test_model_compression_stores_qlab_codes(minilm: Any, workdir: Path) -> None:
    """The whole MiniLM: every compressed MatMul's codes are qlab's of the matching torch weight."""
    q = ovb.compress_weights(minilm, "int4_sym", 32, directory=workdir)
    assert q.info["weight_types"]["i4"] >= 30 and q.weight_bytes < 0.25 * ovb.float_model(minilm).weight_bytes
    stored = ovb.compressed_weights(ovb.core().read_model(str(q.path)))
    lin = minilm.model.encoder.layer[3].attention.output.dense
    key = next(k for k in stored if "layer.3/attention/output/dense" in k)
    sim = ovb.compress(lin.weight.detach().numpy().T, "int4_sym", 32)
    assert (stored[key].codes == sim.codes).mean() > 0.999


def test_static_int8_digits(digits: Any, workdir: Path) -> None:
    q = ovb.quantize_static(digits, batches(digits, 128, 32), directory=workdir)
    assert "FakeQuantize" in q.info["ops"] and q.info["weight_types"].get("i8", 0) >= 3
    assert q.weight_bytes < 0.3 * ovb.float_model(digits).weight_bytes
    assert accuracy(q) > accuracy(digits) - 0.01
    t = compare(digits, [q], batch_size=8, repeat=2, threads=1)
    assert [r["backend"] for r in t.rows] == ["torch", "openvino"] and t.rows[1]["latency_ratio"] > 0


def test_bad_input(digits: Any, minilm: Any, workdir: Path) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        ovb.compress_weights(minilm, "int3")
    with pytest.raises(ValueError, match="group_size must be -1"):
        ovb.compress_weights(minilm, "int4_sym", 24)
    with pytest.raises(ValueError, match="per output channel"):
        ovb.compress_weights(minilm, "int8_asym", 32)
    with pytest.raises(ValueError, match="data-aware"):
        ovb.compress_weights(minilm, "int4_asym", 32, awq=True)
    with pytest.raises(ValueError, match="ratio must be"):
        ovb.compress_weights(minilm, "int4_asym", 32, ratio=0)
    with pytest.raises(ValueError, match="at least one batch"):
        ovb.quantize_static(digits, [])
    with pytest.raises(ValueError, match="NaN or Inf"):
        ovb.quantize_static(digits, [torch.full((4, 1, 8, 8), float("nan"))])
    with pytest.raises(ValueError, match="preset must be"):
        ovb.quantize_static(digits, batches(digits, 8, 8), preset="fast")
    with pytest.raises(ValueError, match="precision must be"):
        ovb.float_model(digits, "f16")
    f = ovb.float_model(digits, directory=workdir)
    with pytest.raises(ValueError, match=r"shape \(batch, 1, 8, 8\)"):
        f.model(torch.zeros(2, 64))
    e = ovb.float_model(minilm, directory=workdir)
    with pytest.raises(ValueError, match="lacks model inputs"):
        e.model(input_ids=torch.ones(1, 4, dtype=torch.int64))

    class Img:
        kind, name, model = "image-generator", "x", None

    with pytest.raises(ValueError, match="supports image-classifier"):
        ovb.float_ir(Img())


@pytest.mark.slow
def test_smollm2_converts_and_runs(workdir: Path) -> None:
    """SmolLM2 through ONNX into OpenVINO: logits equal PyTorch's at f32 (8 tokens, batch 2)."""
    from tests.models._offline import load_offline

    m = load_offline("smollm2-135m")
    f = ovb.float_model(m, directory=workdir)
    ids = batches(m, 2, 2, "eval")[0][:, :8]
    with torch.inference_mode():
        ref = m.model(ids).logits
    assert (f.model(ids).logits - ref).abs().max() < 2e-3
    with pytest.raises(ValueError, match=r"input_ids of shape \(batch, sequence\)"):
        f.model(ids[0])
    with pytest.raises(ValueError, match="for a causal LM"):
        ovb.quantize_static(m, [ids])


def test_speedup_measures_ratios(minilm: Any) -> None:
    """The lesson-15 figure: ratios round by round, quartiles ordered, timings of all three kept."""
    r = ovb.speedup(minilm, batch_sizes=(1,), repeat=3, threads=1)
    q1, med, q3 = r[1]["vs_torch_fp32"]
    assert 0 < q1 <= med <= q3 and set(r[1]["ms"]) == {"torch_fp32", "openvino_fp32", "openvino_int8"}
    with pytest.raises(ValueError, match="repeat must be"):
        ovb.speedup(minilm, repeat=1)
    with pytest.raises(ValueError, match="batch_sizes"):
        ovb.speedup(minilm, batch_sizes=(0,))
