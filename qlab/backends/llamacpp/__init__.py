"""llama.cpp as a real backend: GGUF export with qlab's encoders, evaluation inside llama.cpp.

>>> m = qlab.models.load("smollm2-135m")                                   # doctest: +SKIP
>>> rep = export_gguf(m, "smollm2-q4_k_m.gguf", "q4_k_m")                  # doctest: +SKIP
>>> perplexity("smollm2-q4_k_m.gguf", text, window=512, windows=16)        # doctest: +SKIP
>>> compare("smollm2-q4_k_m.gguf", qlab.eval.reference(m))                 # doctest: +SKIP

* :func:`export_gguf` -- the model as a GGUF file (same recipes as ``qlab.quantize_model``),
  tokenizer and metadata copied from the GGUF it was loaded from, or written from the Hugging
  Face directory it was loaded from (LLaMA, Qwen2, Qwen3, Gemma 3: :mod:`qlab.models.archs`);
* :func:`perplexity`, :func:`window_logits`, :func:`compare`, :func:`kl_report` -- qlab's
  perplexity protocols (``"full-window"``, ``"llama-perplexity"``), KL / top-1 agreement and the
  full ``--kl-divergence`` statistics, computed by llama.cpp (llama-cpp-python);
* :func:`llama_quantize` -- llama.cpp's own quantizer, the reference for qlab's files;
* :func:`sweep` -- ``qlab.sweep``'s size-vs-accuracy table measured in llama.cpp.

``llama_cpp`` is imported lazily, so this package imports without llama-cpp-python installed.
"""

from .export import ExportReport, TensorRow, export_gguf, gguf_name_map, permute_qk, unpermute_qk
from .recipe import FTYPES, TensorChoice, file_type, ggml_type, resolve_types
from .run import compare, kl_report, llama_quantize, perplexity, tokenize, window_logits
from .sweep import sweep

__all__ = [
    "export_gguf",
    "ExportReport",
    "TensorRow",
    "gguf_name_map",
    "permute_qk",
    "unpermute_qk",
    "resolve_types",
    "ggml_type",
    "file_type",
    "FTYPES",
    "TensorChoice",
    "perplexity",
    "compare",
    "kl_report",
    "window_logits",
    "tokenize",
    "llama_quantize",
    "sweep",
]
