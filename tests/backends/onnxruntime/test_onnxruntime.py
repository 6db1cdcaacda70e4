"""ONNX Runtime (CPU execution provider) against qlab's simulations of the same schemes.

* export: ORT runs the traced graph like PyTorch, for any batch size / sentence length;
* dynamic int8: a real MiniLM layer on real activations equals qlab's int8 (weights, symmetric
  per tensor) x int8 (activations, asymmetric per tensor) simulation to float32 rounding; the
  stored weight codes equal qlab's exactly;
* static QDQ (all four calibration methods) on digits-cnn: ORT's integer kernels give the logits
  of the QDQ graph evaluated by onnx's reference interpreter with qlab's quantizer, to the code;
* MatMulNBits: the stored 4-bit weights decode to ``qlab.roundtrip(w, "int4", group)`` exactly.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from qlab.backends import onnxruntime as ortb
from qlab.backends.compare import batches, run_batch, tokenize
from qlab.eval import embed, wikitext_sentences
from qlab.formats import get, roundtrip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def static_files(digits: Any, workdir: Path) -> dict[str, Any]:
    cal = batches(digits, 128, 64)
    return {k: ortb.quantize_static(digits, cal, method=k, directory=workdir) for k in ortb.CALIBRATION_METHODS}


def _inits(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def test_export_runs_like_torch_with_dynamic_axes(minilm: Any, workdir: Path) -> None:
    f = ortb.float_session(minilm, workdir)
    proto = onnx.load(str(f.path))
    assert proto.opset_import[0].version == ortb.OPSET
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]
    for sents in (wikitext_sentences(1), wikitext_sentences(5)):
        b = tokenize(minilm, sents)
        with torch.inference_mode():
            ref = run_batch(minilm.model, b).last_hidden_state.numpy()
        assert np.abs(ortb.run(f, b) - ref).max() < 1e-4


@pytest.fixture(scope="module")
def layer(minilm: Any, workdir: Path) -> tuple[torch.nn.Linear, np.ndarray, Path]:
    """A real MiniLM Linear, real activations entering it (8 padded sentences), and the layer
    exported alone to ONNX (3-D input, so it becomes MatMul + Add as inside the model)."""
    lin = minilm.model.encoder.layer[0].intermediate.dense
    got: dict[str, torch.Tensor] = {}
    h = lin.register_forward_hook(lambda _m, i, _o: got.update(x=i[0].detach().clone()))
    with torch.inference_mode():
        run_batch(minilm.model, batches(minilm, 8, 8, "eval")[0])
    h.remove()
    src = workdir / "lin.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(lin, (got["x"],), str(src), dynamo=False, opset_version=ortb.OPSET, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "b", 1: "s"}})
    return lin, got["x"].numpy(), src


def test_dynamic_layer_matches_qlab_simulation(layer: Any, workdir: Path) -> None:
    lin, x, src = layer
    dst = ortb.quantize_dynamic_onnx(src, workdir / "lin.dyn.onnx")  # the backend's own file-level step
    y = ortb.session(dst).run(None, {"x": x})[0]
    w = lin.weight.detach().numpy()
    (codes,) = [v for v in _inits(dst).values() if v.dtype == np.int8 and v.size == w.size]
    np.testing.assert_array_equal(codes.T, get("int8").encode(w, granularity="tensor").parts["codes"])
    x_hat = roundtrip(x, "int8", symmetric=False, granularity="tensor")
    y_sim = x_hat @ roundtrip(w, "int8", granularity="tensor").T + lin.bias.detach().numpy()
    # tolerance: float32 rounding of the int32 rescale and of the float matmul (~1e-6 relative)
    assert np.abs(y - y_sim).max() <= 1e-5 * np.abs(y).max()
    with torch.inference_mode():
        y_float = lin(torch.from_numpy(x)).numpy()
    assert np.abs(y - y_sim).max() < np.abs(y - y_float).max() / 100


@pytest.mark.parametrize("symmetric", [False, True])
def test_matmul_nbits_layer_matches_qlab(layer: Any, workdir: Path, symmetric: bool) -> None:
    lin, x, src = layer
    dst = ortb.quantize_weight_only_onnx(src, workdir / f"lin.w4{symmetric}.onnx", "int4", 32, symmetric)
    (stored,) = ortb.matmul_nbits_weights(dst).values()
    w = lin.weight.detach().numpy()
    w_hat = ortb.block_weights(w, 32, 4, symmetric)
    np.testing.assert_array_equal(stored, w_hat)  # qlab's quantizer with ORT's rules: bit for bit
    y = ortb.session(dst).run(None, {"x": x})[0]
    y_sim = x @ w_hat.T + lin.bias.detach().numpy()
    assert np.abs(y - y_sim).max() <= 1e-5 * np.abs(y).max()  # fp32 compute: summation order only


def test_dynamic_model_matches_simulation(minilm: Any, workdir: Path) -> None:
    dyn = ortb.quantize_dynamic(minilm, directory=workdir)
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= set(dyn.info["ops"])
    sentences = wikitext_sentences(16)
    e_ref, e_q, e_sim = embed(minilm, sentences), embed(dyn, sentences), embed(ortb.simulate_dynamic(minilm), sentences)
    cos = torch.nn.functional.cosine_similarity
    # per layer the runtime and qlab agree to float rounding; through 6 layers of per-tensor 8-bit
    # activations (and ORT's own float kernels for GELU/LayerNorm/softmax) the rare near-tie
    # codes compound, so the model-level tolerance is cosine > 0.98 and equal quality (+-0.01)
    assert cos(e_q, e_sim).mean() > 0.98
    assert abs(cos(e_q, e_ref).mean() - cos(e_sim, e_ref).mean()) < 0.01
    assert dyn.weight_bytes < 0.7 * ortb.float_session(minilm, workdir).weight_bytes


@pytest.mark.parametrize("method", ortb.CALIBRATION_METHODS)
def test_static_qdq_matches_qlab_simulation(digits: Any, static_files: dict[str, Any], method: str) -> None:
    q = static_files[method]
    inits = _inits(q.path)
    x = batches(digits, 64, 64, "eval")[0]
    y = ortb.run(q, x)
    y_sim = ortb.simulate_qdq(q.path, {"x": x.numpy()})
    # tolerance: one code of the output scale (ORT's fused integer kernels requantize in float)
    assert np.abs(y - y_sim).max() <= 1.001 * float(inits["logits_scale"])
    # weights: ORT's per-channel symmetric int8 codes are qlab's int8 (s = max|w| / 127) per channel
    for name in ("conv2.weight", "fc1.weight"):
        w = dict(digits.model.named_parameters())[name].detach().numpy()
        rows = w.reshape(w.shape[0], -1)
        np.testing.assert_array_equal(inits[f"{name}_quantized"].reshape(rows.shape),
                                      get("int8").encode(rows, granularity="channel").parts["codes"])
    acc = q.evaluate()["accuracy"]
    assert acc > (0.8 if method == "distribution" else 0.95)


def test_static_runs_integer_kernels(digits: Any, static_files: dict[str, Any], workdir: Path) -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(workdir / "optimized.onnx")
    ort.InferenceSession(str(static_files["minmax"].path), opts, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
    assert "QLinearConv" in ops  # DQ -> Conv -> Q fused into an int8 convolution
    assert "Conv" not in ops


def test_matmul_nbits_model_weights_are_qlab_int4(minilm: Any, workdir: Path) -> None:
    q = ortb.quantize_weight_only(minilm, "int4", block_size=32, directory=workdir)
    assert "MatMulNBits" in q.info["ops"]
    stored = list(ortb.matmul_nbits_weights(q.path).values())
    lins = [mod.weight.detach().numpy() for mod in minilm.model.encoder.modules() if type(mod) is torch.nn.Linear]
    assert len(stored) == len(lins) == 36
    near_ties = 0
    for w in lins:  # every Linear weight is stored exactly as qlab's quantizer with ORT's rules gives it
        ref = ortb.block_weights(w, 32, 4)
        (match,) = [s for s in stored if np.array_equal(s, ref)]
        # the plain qlab format (rint(w / s) + z) differs only at near-ties, by one step
        plain = roundtrip(w, "int4", symmetric=False, granularity="group", group_size=32)
        step = (np.ptp(w.reshape(-1, 32), axis=1) / 15).repeat(32).reshape(w.shape)
        assert np.all(np.abs(plain - match) <= 1.0001 * step)
        near_ties += int((plain != match).sum())
    assert near_ties <= 1e-5 * sum(w.size for w in lins)
    b = batches(minilm, 4, 4, "eval")[0]
    with torch.inference_mode():
        y_sim = run_batch(ortb.simulate_weight_only(minilm).model, b).last_hidden_state.numpy()
    # float activations, identical weights: only float32 summation order differs
    assert np.abs(ortb.run(q, b) - y_sim).max() < 1e-3


def test_calibration_reader(digits: Any) -> None:
    r = ortb.BatchReader(batches(digits, 96, 32), ["x"])
    assert len(r) == 3 and isinstance(r, __import__("onnxruntime").quantization.CalibrationDataReader)
    assert [r.get_next()["x"].shape for _ in range(3)] == [(32, 1, 8, 8)] * 3 and r.get_next() is None
    r.rewind()
    assert r.get_next() is not None
    with pytest.raises(ValueError, match="NaN"):
        ortb.BatchReader([torch.full((2, 1, 8, 8), float("nan"))], ["x"])


def test_bad_input(digits: Any, minilm: Any, workdir: Path) -> None:
    with pytest.raises(ValueError, match=r"onnxruntime.*'int4'.*int8, uint8"):
        ortb.quantize_dynamic(digits, "int4", directory=workdir)
    with pytest.raises(ValueError, match=r"onnxruntime.*'nf4'.*int4, int8"):
        ortb.quantize_weight_only(minilm, "nf4", directory=workdir)
    with pytest.raises(ValueError, match=r"onnxruntime.*'fp8_e4m3'.*uint8, int8"):
        ortb.quantize_static(digits, batches(digits, 32, 32), activations="fp8_e4m3", directory=workdir)
    with pytest.raises(ValueError, match="calibration method"):
        ortb.quantize_static(digits, batches(digits, 32, 32), method="mse", directory=workdir)
    with pytest.raises(ValueError, match="calibration batches"):
        ortb.quantize_static(digits, [], directory=workdir)
    with pytest.raises(ValueError, match="block_size"):
        ortb.quantize_weight_only(minilm, "int4", block_size=24, directory=workdir)
    with pytest.raises(ValueError, match="no layer"):  # digits' Linear layers are Gemm: no MatMul
        ortb.quantize_weight_only(digits, "int4", directory=workdir)
    lm = type(digits)("tiny-lm", torch.nn.Linear(2, 2), None, "causal-lm", None)
    with pytest.raises(ValueError, match=r"onnxruntime.*causal-lm"):
        ortb.export(lm, workdir / "lm.onnx")


# -- issue 11, item 9: the float-export cache is keyed by all the weight bytes --------------------
def test_float_export_not_shared_by_permuted_rows(digits: Any, tmp_path: Path) -> None:
    m1 = digits.fresh()
    m2 = digits.fresh()
    with torch.no_grad():  # fc2's rows permuted: the same sum of weights, another model
        m2.model.fc2.weight.copy_(m2.model.fc2.weight.flip(0))
        m2.model.fc2.bias.copy_(m2.model.fc2.bias.flip(0))
    p1, p2 = ortb.float_onnx(m1, tmp_path), ortb.float_onnx(m2, tmp_path)
    assert p1 != p2 and p1.is_file() and p2.is_file()
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for m, p in ((m1, p1), (m2, p2)):
        got = ortb.session(p).run(None, {"x": x.numpy()})[0]
        with torch.no_grad():
            want = m.model(x).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted([p1.name, p2.name])  # no temp files left
