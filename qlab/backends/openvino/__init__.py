"""OpenVINO: zoo models as OpenVINO IR, quantized with NNCF, run on the OpenVINO CPU plugin.

>>> import qlab.models
>>> from qlab.backends import openvino as ovb
>>> from qlab.backends.compare import batches
>>> m = qlab.models.load("minilm-l6")                                            # doctest: +SKIP
>>> st = ovb.quantize_static(m, batches(m))                                      # nncf.quantize, int8
>>> w4 = ovb.compress_weights(m, "int4_asym", group_size=32)                     # nncf.compress_weights
>>> st.evaluate(), st.disk_bytes, st.path                                         # doctest: +SKIP

The package is named after the runtime it drives; inside it ``import openvino`` is the real
runtime (absolute imports). :mod:`.convert` says why the IR comes from ONNX and how the CPU
plugin's precision is set; :mod:`.quantize` the NNCF calls; :mod:`.simulate` qlab's simulation of
NNCF's weight compression that the tests hold the runtime to; :mod:`.speed` the latency ratios
of lesson 15's claim. Telemetry stays off (:mod:`qlab._offline`).
"""

from .convert import (
    BACKEND,
    KINDS,
    PRECISIONS,
    OvModule,
    compile_ir,
    core,
    export_lm_onnx,
    float_ir,
    ir_disk_bytes,
    ir_weight_bytes,
    save_ir,
)
from .quantize import (
    STATIC_PRESETS,
    WEIGHT_MODES,
    compress_weights,
    compress_weights_ir,
    dataset,
    float_model,
    quantize_static,
    weight_types,
)
from .simulate import MODES, Compressed, compress, compressed_weights, constant_values, simulate
from .speed import speedup

__all__ = [
    "BACKEND",
    "KINDS",
    "MODES",
    "PRECISIONS",
    "STATIC_PRESETS",
    "WEIGHT_MODES",
    "Compressed",
    "OvModule",
    "compile_ir",
    "compress",
    "compress_weights",
    "compress_weights_ir",
    "compressed_weights",
    "constant_values",
    "core",
    "dataset",
    "export_lm_onnx",
    "float_ir",
    "float_model",
    "ir_disk_bytes",
    "ir_weight_bytes",
    "quantize_static",
    "save_ir",
    "simulate",
    "speedup",
    "weight_types",
]
