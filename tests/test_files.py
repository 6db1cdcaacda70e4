"""qlab.files: every write goes to a temporary file beside the target and is renamed on success;
a failure (an exception in the writer, a value json cannot serialise, a broken ONNX input) leaves
the previous file byte for byte and no temporary file behind."""

from __future__ import annotations

import contextlib
import json
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pytest  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from qlab.files import atomic_path, save_figure, write_json, write_text  # noqa: E402


def _only(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".bin") and tmp != target
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and _only(tmp_path) == ["a.bin"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and _only(tmp_path) == ["a.bin"]


def test_write_json_and_text(tmp_path: Path) -> None:
    target = tmp_path / "rows.json"
    write_json(target, {"a": np.float32(1.5)}, default=float)
    assert json.loads(target.read_text()) == {"a": 1.5}
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1.5} and _only(tmp_path) == ["rows.json"]
    write_text(target, "é")
    assert target.read_text(encoding="utf-8") == "é"


def test_save_figure_failure_keeps_the_old_plot(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    target = tmp_path / "plot.pdf"
    save_figure(fig, target)
    good = target.read_bytes()
    assert good.startswith(b"%PDF")
    ax.set_title(r"$\frac{$")  # invalid mathtext: fails while the PDF is being drawn
    with pytest.raises(ValueError):
        save_figure(fig, target)
    assert target.read_bytes() == good and _only(tmp_path) == ["plot.pdf"]
    plt.close(fig)


def test_save_figure_formats(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    save_figure(fig, tmp_path / "p.svg")
    save_figure(fig, tmp_path / "noext")  # matplotlib's default format, at exactly that path
    save_figure(fig, tmp_path / "q.bin", format="png")
    plt.close(fig)
    assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "noext").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "q.bin").read_bytes()[:4] == b"\x89PNG"
    assert _only(tmp_path) == ["noext", "p.svg", "q.bin"]


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past ``nbytes`` fail with ``OSError(EFBIG)`` (RLIMIT_FSIZE, SIGXFSZ ignored), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def _matmul_onnx(path: Path, k: int = 256, n: int = 128) -> None:
    w = np.random.default_rng(0).normal(size=(k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.save(model, str(path))


@pytest.mark.parametrize("step", ["dynamic", "weight_only"])
def test_onnxruntime_quantizers_write_atomically(tmp_path: Path, step: str) -> None:
    from qlab.backends.onnxruntime import quantize_dynamic_onnx, quantize_weight_only_onnx

    run = {"dynamic": quantize_dynamic_onnx, "weight_only": quantize_weight_only_onnx}[step]
    src, dst = tmp_path / "m.onnx", tmp_path / "q.onnx"
    _matmul_onnx(src)
    run(src, dst)
    good = dst.read_bytes()
    ops = {nd.op_type for nd in onnx.load(str(dst)).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "MatMulNBits"}
    with pytest.raises(Exception), file_size_limit(len(good) // 4):  # noqa: B017 ("disk full" while ORT writes)
        run(src, dst)
    assert dst.read_bytes() == good and _only(tmp_path) == ["m.onnx", "q.onnx"]
    src.write_bytes(src.read_bytes()[:100])  # a truncated input
    with pytest.raises(Exception):  # noqa: B017 (onnx/protobuf raise their own types)
        run(src, dst)
    assert dst.read_bytes() == good and _only(tmp_path) == ["m.onnx", "q.onnx"]
