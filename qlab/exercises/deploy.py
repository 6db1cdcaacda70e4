"""Exercises of lesson 12 (deployment): the bytes of an ONNX Runtime ``MatMulNBits`` layer."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..files import atomic_path
from ._core import Case, Exercise, allclose, exercise


def ort_matmul_nbits_bytes(n: int, k: int, bits: int = 4, block_size: int = 32, symmetric: bool = False) -> int:
    """qlab's answer, measured: a one-``MatMul`` ONNX graph (weight ``(k, n)``) quantized by ONNX
    Runtime's ``MatMulNBitsQuantizer`` (:func:`qlab.backends.onnxruntime.quantize_weight_only_onnx`);
    the bytes of the initializers of its ``MatMulNBits`` node."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..backends.onnxruntime import quantize_weight_only_onnx

    w = np.random.default_rng(0).normal(size=(k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "m.onnx", Path(d) / "q.onnx"
        with atomic_path(src) as tmp:  # qlab writes every file through temp + rename
            onnx.save(model, str(tmp))
        quantize_weight_only_onnx(src, dst, f"int{bits}", block_size, symmetric)
        q = onnx.load(str(dst))
    node = next(x for x in q.graph.node if x.op_type == "MatMulNBits")
    inits = {t.name: t for t in q.graph.initializer}
    return int(sum(numpy_helper.to_array(inits[i]).nbytes for i in node.input if i in inits))


def _cases() -> Iterator[Case]:
    yield (1536, 384, 4, 32, False), {}  # MiniLM's intermediate.dense: 1536 outputs, 384 inputs
    yield (384, 1536, 4, 32, True), {}  # output.dense, symmetric (no zero-points)
    yield (384, 384, 4, 128, False), {}  # attention projection, larger blocks
    yield (10, 100, 4, 32, False), {}  # k not a multiple of the block: the last block is padded
    yield (64, 96, 8, 32, False), {}  # 8-bit codes


exercise(Exercise(
    name="matmul_nbits_bytes",
    lesson=12,
    prompt=(
        "Write matmul_nbits_bytes(n, k, bits, block_size, symmetric) -> int: the bytes ONNX Runtime stores for a "
        "MatMulNBits layer with n outputs and k inputs (a torch Linear(k, n)). Blocks of block_size values run "
        "along k (the last block padded); each block stores its codes (block_size * bits / 8 bytes) and one "
        "float32 scale; unless symmetric, also a bits-bit zero-point, packed per output row and padded to a whole byte."
    ),
    hint=(
        "blocks = ceil(k / block_size); codes = n * blocks * block_size * bits // 8; scales = 4 * n * blocks; "
        "zero-points = n * ceil(blocks * bits / 8) bytes (0 if symmetric)."
    ),
    reference=ort_matmul_nbits_bytes,
    cases=_cases,
    compare=allclose(),
))

__all__ = ["ort_matmul_nbits_bytes"]
