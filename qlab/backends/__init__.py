"""Real inference engines that run models qlab has quantized (not simulations).

* :mod:`qlab.backends.torch_native` -- ``torch.ao.quantization`` (x86/fbgemm): dynamic and static int8.
* :mod:`qlab.backends.onnxruntime` -- ONNX export, ORT dynamic / static (QDQ) / MatMulNBits quantization.
* :mod:`qlab.backends.bitsandbytes` -- ``Linear8bitLt`` and ``Linear4bit`` layers (CPU, and CUDA when present).
* :mod:`qlab.backends.llamacpp` -- write a (quantized) LLM as GGUF with qlab's encoders and run it in llama.cpp.
* :mod:`qlab.backends.openvino` -- OpenVINO IR on the CPU plugin; NNCF static int8 and int8/int4 weight compression.
* :mod:`qlab.backends.compare` -- bytes / accuracy / latency tables across backends.

Subpackages are imported on first use, each pulling in only its own runtime.
"""

from importlib import import_module
from typing import Any

_SUBPACKAGES = ("bitsandbytes", "compare", "llamacpp", "onnxruntime", "openvino", "torch_native")
__all__ = list(_SUBPACKAGES)


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'qlab.backends' has no attribute {name!r}")
