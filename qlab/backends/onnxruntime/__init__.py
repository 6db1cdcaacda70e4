"""ONNX Runtime: export to ONNX, quantize with ``onnxruntime.quantization``, run on the CPU provider.

>>> import qlab.models
>>> from qlab.backends import onnxruntime as ortb
>>> from qlab.backends.compare import batches
>>> m = qlab.models.load("minilm-l6")                                               # doctest: +SKIP
>>> dyn = ortb.quantize_dynamic(m)                                                  # dynamic W8A8
>>> st = ortb.quantize_static(m, batches(m), method="entropy")                     # QDQ, calibrated
>>> w4 = ortb.quantize_weight_only(m, "int4", block_size=32)                        # MatMulNBits
>>> dyn.evaluate(), dyn.disk_bytes, dyn.path                                         # doctest: +SKIP

The package is named after the runtime it drives; inside it ``import onnxruntime`` is the real
runtime (absolute imports). See :mod:`.export` for tracing vs scripting, the opset and the dynamic
batch axis, :mod:`.calibration` for the four calibration methods, :mod:`.simulate` for the qlab
simulations each scheme is tested against.
"""

from .calibration import CALIBRATION_METHODS, BatchReader, as_batches, calibration_method
from .export import BACKEND, IR_VERSION, KINDS, OPSET, OrtModule, export, feeds, session
from .quantize import (
    DYNAMIC_WEIGHTS,
    STATIC_ACTIVATIONS,
    STATIC_WEIGHTS,
    WEIGHT_ONLY,
    float_onnx,
    float_session,
    onnx_weight_bytes,
    quantize_dynamic,
    quantize_dynamic_onnx,
    quantize_static,
    quantize_weight_only,
    quantize_weight_only_onnx,
    run,
)
from .simulate import (
    block_weights,
    matmul_nbits_weights,
    simulate_dynamic,
    simulate_qdq,
    simulate_weight_only,
)

__all__ = [
    "BACKEND",
    "CALIBRATION_METHODS",
    "DYNAMIC_WEIGHTS",
    "IR_VERSION",
    "KINDS",
    "OPSET",
    "STATIC_ACTIVATIONS",
    "STATIC_WEIGHTS",
    "WEIGHT_ONLY",
    "BatchReader",
    "OrtModule",
    "as_batches",
    "block_weights",
    "calibration_method",
    "export",
    "feeds",
    "float_onnx",
    "float_session",
    "matmul_nbits_weights",
    "onnx_weight_bytes",
    "quantize_dynamic",
    "quantize_dynamic_onnx",
    "quantize_static",
    "quantize_weight_only",
    "quantize_weight_only_onnx",
    "run",
    "session",
    "simulate_dynamic",
    "simulate_qdq",
    "simulate_weight_only",
]
