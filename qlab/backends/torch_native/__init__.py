"""PyTorch's own int8 kernels (``torch.ao.quantization``, x86/fbgemm engine) -- real, not simulated.

>>> import qlab.models
>>> from qlab.backends import torch_native
>>> from qlab.backends.compare import batches
>>> enc = torch_native.quantize_dynamic(qlab.models.load("minilm-l6"))            # doctest: +SKIP
>>> cnn = qlab.models.load("digits-cnn")                                          # doctest: +SKIP
>>> q = torch_native.quantize_static(cnn, batches(cnn))                           # doctest: +SKIP
>>> q.evaluate(), q.disk_bytes                                                     # doctest: +SKIP

* :func:`quantize_dynamic` -- ``nn.Linear`` -> ``DynamicQuantizedLinear`` (int8 weights,
  activations quantized per call); any model with Linear layers (MiniLM, SmolLM2).
* :func:`quantize_static` -- prepare / calibrate / convert of digits-cnn with fused conv+relu and
  linear+relu (``QuantStub``/``DeQuantStub``, histogram or min-max observers).
* :func:`simulate_dynamic`, :func:`simulate_static` -- qlab's simulation of the same schemes, which
  the tests hold the real kernels to.

Both return a :class:`qlab.backends.compare.BackendModel`; ``qlab.eval`` runs on it directly.
"""

from ._engine import BACKEND, ENGINE
from .dynamic import (
    ACTIVATION_BITS,
    DYNAMIC_FORMATS,
    SimulatedDynamicLinear,
    quantize_dynamic,
    simulate_dynamic,
)
from .static import OBSERVERS, STATIC_FORMATS, QuantizableDigitsCNN, quantize_static, simulate_static

__all__ = [
    "ACTIVATION_BITS",
    "BACKEND",
    "DYNAMIC_FORMATS",
    "ENGINE",
    "OBSERVERS",
    "STATIC_FORMATS",
    "QuantizableDigitsCNN",
    "SimulatedDynamicLinear",
    "quantize_dynamic",
    "quantize_static",
    "simulate_dynamic",
    "simulate_static",
]
