"""bitsandbytes: ``Linear8bitLt`` (LLM.int8() with outlier threshold) and ``Linear4bit`` (nf4/fp4,
double quant) replacing a model's ``nn.Linear`` layers -- bitsandbytes' real kernels, on CPU and,
when a GPU is visible, on CUDA.

>>> import qlab.models
>>> from qlab.backends import bitsandbytes as bnbb
>>> m = qlab.models.load("minilm-l6")                                 # doctest: +SKIP
>>> q = bnbb.quantize(m, "nf4")                                       # doctest: +SKIP
>>> q8 = bnbb.quantize(m, "int8", threshold=6.0)                      # doctest: +SKIP
>>> g = bnbb.quantize(m, "nf4", device="cuda")                        # doctest: +SKIP

:func:`simulate` builds qlab's simulation of the same modules (``qlab.roundtrip(w, "nf4")`` for
4-bit; the LLM.int8() decomposition with qlab's ``int8`` for 8-bit), which the tests hold the
real modules to. The package is named after the library it drives; inside it
``import bitsandbytes`` is the real library (absolute imports).
"""

from .linear import (
    BACKEND,
    CPU_KERNELS,
    DEVICES,
    FORMATS,
    check_cpu_kernel,
    check_device,
    cpu_bf16_kernel,
    quantize,
    quantized_linear,
)
from .simulate import (
    BNB_INV_127_SQ,
    four_bit_weight,
    int8_weight,
    llm_int8_linear,
    outlier_columns,
    simulate,
)

__all__ = [
    "BACKEND",
    "BNB_INV_127_SQ",
    "CPU_KERNELS",
    "DEVICES",
    "FORMATS",
    "check_cpu_kernel",
    "check_device",
    "cpu_bf16_kernel",
    "four_bit_weight",
    "int8_weight",
    "llm_int8_linear",
    "outlier_columns",
    "quantize",
    "quantized_linear",
    "simulate",
]
