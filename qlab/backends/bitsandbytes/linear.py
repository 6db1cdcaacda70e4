"""Swap ``nn.Linear`` layers for bitsandbytes' ``Linear8bitLt`` / ``Linear4bit`` (CPU, or CUDA).

* ``"int8"`` -- ``Linear8bitLt`` (LLM.int8(), Dettmers et al. 2022, arXiv:2208.07339): weights
  int8 per output row (``s = max|w| / 127`` of the float16-rounded weight, stored as ``CB``,
  ``SCB``); each call quantizes the input per token (row) to int8 and multiplies in int32.
  With ``threshold=6.0`` (the paper's value) every input *column* holding a value with
  ``|x| >= 6`` is taken out of the int8 product and multiplied in float with the dequantized
  weight columns: the mixed-precision decomposition that keeps the few huge activation
  features of large transformers from flattening everyone else's int8 grid.
* ``"nf4"`` / ``"fp4"`` -- ``Linear4bit`` (QLoRA, Dettmers et al. 2023, arXiv:2305.14314):
  weights as 4-bit codebook indices with one absmax per ``block_size`` (64) values; with
  ``compress_statistics=True`` ("double quantization") the absmax are themselves stored in
  8 bits per block of 256. Each call dequantizes and multiplies in ``compute_dtype`` (float32)
  -- except on CPUs with AVX512-BF16, where bitsandbytes 0.50 runs a fused bfloat16 kernel in
  inference (:mod:`.simulate` says exactly what it computes). ``cpu_kernel="float32"`` keeps
  bitsandbytes on its float32 CPU path on every CPU (the lessons use it, so that their printed
  numbers are the same on every machine); ``"auto"`` (default) leaves the choice to bitsandbytes.

Quantization happens when the parameter is moved to its device (``.to("cpu")`` or
``.to("cuda")``), exactly as in bitsandbytes' own examples. On CUDA the same modules run
bitsandbytes' CUDA kernels; ``device="cuda"`` without a GPU is a clear error.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..model import BackendModel, saved_bytes, state_bytes

BACKEND = "bitsandbytes"
FORMATS = ("int8", "nf4", "fp4")
DEVICES = ("cpu", "cuda")
CPU_KERNELS = ("auto", "float32")
BF16_BLOCK_N = 32  # the bfloat16 CPU kernel repacks the weight in tiles of 32 output rows

# MatMul8bitLt logs a warning on every call whose input is not float16 ("inputs will be cast
# from float32 to float16 during quantization"): that cast is the scheme (see simulate.py),
# so qlab keeps the message out of notebooks.
logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


def _unsupported(fmt: object) -> ValueError:
    return ValueError(f"{BACKEND} backend cannot run format {fmt!r}; it supports: "
                      f"{', '.join(FORMATS)} (fp4_bnb is accepted for fp4)")


def check_device(device: str) -> torch.device:
    """``cpu`` or ``cuda`` (the latter only with a CUDA build of torch and a visible GPU)."""
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError):  # "gpu", "", "CPU", None: torch's own parse error is cryptic
        dev = None
    if dev is None or dev.type not in DEVICES:
        raise ValueError(f"{BACKEND}: device must be one of {DEVICES} (lower case; 'cuda:0' also works), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{BACKEND}: device='cuda' asked but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__}); use device='cpu'")
    return dev


def check_threshold(threshold: float) -> float:
    """The LLM.int8() outlier threshold: a finite number >= 0 (0 = no outlier decomposition)."""
    ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and math.isfinite(threshold)
    if not ok or threshold < 0:
        raise ValueError(
            f"{BACKEND}: threshold must be a finite number >= 0 (6.0 in the paper, 0 = no outlier "
            f"decomposition), got {threshold!r}"
        )
    return float(threshold)


def check_cpu_kernel(cpu_kernel: str) -> str:
    """``"auto"`` (bitsandbytes picks: bfloat16 on AVX512-BF16 CPUs) or ``"float32"`` (always)."""
    if cpu_kernel not in CPU_KERNELS:
        raise ValueError(f"{BACKEND}: cpu_kernel must be one of {CPU_KERNELS}, got {cpu_kernel!r}")
    return cpu_kernel


FP16_MAX = 65504.0


def check_block_size(block_size: Any) -> None:
    """bitsandbytes' 4-bit blocks: a power of two in 32..4096 (its kernels' template sizes)."""
    if isinstance(block_size, bool) or block_size not in (32, 64, 128, 256, 512, 1024, 2048, 4096):
        raise ValueError(f"{BACKEND}: block_size must be a power of two in 32..4096, got {block_size!r}")


def quantized_linear(
    lin: nn.Linear, weights: str, device: str | torch.device = "cpu", threshold: float = 6.0,
    block_size: int = 64, compress_statistics: bool = True, cpu_kernel: str = "auto",
) -> nn.Module:
    """One bitsandbytes module holding ``lin``'s weights, quantized on ``device``. ``cpu_kernel``:
    see the module docstring (4-bit layers only)."""
    import bitsandbytes as bnb

    check_cpu_kernel(cpu_kernel)
    check_threshold(threshold)
    device = check_device(device)
    weights = "fp4" if weights == "fp4_bnb" else weights
    if weights not in FORMATS:
        raise _unsupported(weights)
    if weights != "int8":
        check_block_size(block_size)
    if weights != "int8" and lin.in_features % block_size:
        raise ValueError(
            f"{BACKEND}: a Linear with in_features={lin.in_features} (not a multiple of block_size={block_size}) "
            f"cannot be held in {weights}: bitsandbytes 0.50's CPU dequantize kernel indexes the absmax per "
            f"row (row * (in_features // block_size) + col // block_size) while blocks are cut from the "
            f"flattened weight, so such a layer decodes with the wrong scales"
        )
    if weights != "int8" and _runs_bf16_kernel(torch.device(device), cpu_kernel) and lin.out_features % BF16_BLOCK_N:
        raise ValueError(
            f"{BACKEND}: a Linear with out_features={lin.out_features} (not a multiple of {BF16_BLOCK_N}) cannot run "
            f"bitsandbytes 0.50's bfloat16 CPU kernel, which this CPU would use (its repacking asserts "
            f"'N must be divisible by block_n' on the first call); pass cpu_kernel='float32'"
        )
    w = lin.weight.detach().to("cpu", torch.float32).clone()
    has_bias = lin.bias is not None
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{BACKEND}: the Linear's weight has NaN/Inf values; bitsandbytes cannot quantize it")
    if weights == "int8" and float(w.abs().max()) > FP16_MAX:
        # Linear8bitLt keeps its outlier columns and the int8 matmul's rescaling in float16: a weight
        # beyond the float16 maximum turns the whole output into NaN (measured: scale 1e6 -> all NaN)
        raise ValueError(
            f"{BACKEND}: int8 (LLM.int8) cannot hold a weight of magnitude {float(w.abs().max()):.4g}: bitsandbytes "
            f"computes its outliers in float16 (largest finite value {FP16_MAX:g}), so the output would be NaN; "
            "use a 4-bit format (float32 absmax) or rescale the layer"
        )
    if weights == "int8":
        mod = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=has_bias, has_fp16_weights=False,
                                  threshold=threshold)
        mod.weight = bnb.nn.Int8Params(w, requires_grad=False, has_fp16_weights=False)
    else:
        mod = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=has_bias, compute_dtype=torch.float32,
                                compress_statistics=compress_statistics, quant_type=weights,
                                quant_storage=torch.uint8)
        mod.weight = bnb.nn.Params4bit(w, requires_grad=False, blocksize=block_size,
                                       compress_statistics=compress_statistics, quant_type=weights,
                                       quant_storage=torch.uint8, module=mod)
        if cpu_kernel == "float32":
            # Linear4bit.forward takes the bf16 path only when this flag (set from
            # has_avx512bf16() in __init__) is true; refuse a bitsandbytes that no longer has it
            if not hasattr(mod, "support_avx512bf16_for_cpu"):
                raise RuntimeError(f"{BACKEND} {bnb.__version__}: Linear4bit has no support_avx512bf16_for_cpu; "
                                   "cpu_kernel='float32' is written for bitsandbytes 0.50 (requirements.lock)")
            mod.support_avx512bf16_for_cpu = False
    if has_bias:
        mod.bias = nn.Parameter(lin.bias.detach().to("cpu", torch.float32).clone(), requires_grad=False)
    return mod.to(device).eval()  # the move quantizes


def quantize(
    m: Any,
    weights: str = "nf4",
    threshold: float = 6.0,
    block_size: int = 64,
    compress_statistics: bool = True,
    device: str = "cpu",
    skip: Sequence[str] = (),
    cpu_kernel: str = "auto",
) -> BackendModel:
    """A copy of ``m`` whose ``nn.Linear`` layers (except names containing a ``skip`` entry)
    are bitsandbytes modules on ``device``. ``threshold`` applies to ``int8`` only (0 disables
    the outlier decomposition); ``block_size`` and ``compress_statistics`` to ``nf4``/``fp4``.

    4-bit layers whose ``in_features`` is not a multiple of ``block_size`` (digits-cnn's 32-input
    output layer) stay float: bitsandbytes 0.50's CPU kernels decode them with the wrong scales
    (see :func:`quantized_linear`). So do, where bitsandbytes would run its bfloat16 CPU kernel
    (``cpu_kernel="auto"`` on an AVX512-BF16 CPU), 4-bit layers whose ``out_features`` is not a
    multiple of 32: that kernel cannot hold them. They are listed in ``info["float_layers"]`` and
    the scheme.
    """
    weights = "fp4" if weights == "fp4_bnb" else weights
    if weights not in FORMATS:
        raise _unsupported(weights)
    check_cpu_kernel(cpu_kernel)
    check_threshold(threshold)
    check_block_size(block_size)
    dev = check_device(device)
    model = copy.deepcopy(m.model).eval()
    names = [n for n, mod in model.named_modules() if type(mod) is nn.Linear and not any(s in n for s in skip)]
    if not names:
        raise ValueError(f"{BACKEND}: {m.name} has no nn.Linear layers to replace")
    bf16 = _runs_bf16_kernel(dev, cpu_kernel)
    kept = [] if weights == "int8" else [
        n for n in names
        if model.get_submodule(n).in_features % block_size or (bf16 and model.get_submodule(n).out_features % BF16_BLOCK_N)
    ]  # fmt: skip
    names = [n for n in names if n not in kept]  # see quantized_linear: rows must hold whole blocks
    if not names:
        raise ValueError(f"{BACKEND}: no Linear layer of {m.name} has in_features divisible by block_size="
                         f"{block_size}; {weights} cannot hold any of them")
    for name in names:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, quantized_linear(getattr(owner, attr), weights, dev, threshold, block_size,
                                              compress_statistics, cpu_kernel))
    model.to(dev)
    if dev.type != "cpu":
        model = _DeviceModel(model, dev)
    if weights == "int8":
        scheme = f"LLM.int8 (threshold {threshold:g})" if threshold > 0 else "int8 vector-wise (no outliers)"
    else:
        scheme = f"{weights} block {block_size}{' + double quant' if compress_statistics else ''}"
        scheme += " [bf16 CPU kernel]" if bf16 else ""
    scheme += "" if dev.type == "cpu" else f" [{dev.type}]"
    scheme += f" ({len(kept)} layer{'s' * (len(kept) > 1)} kept float)" if kept else ""
    loaded = dataclasses.replace(m, model=model)
    return BackendModel(BACKEND, scheme, loaded, state_bytes(model), saved_bytes(model),
                        info={"layers": names, "float_layers": kept, "device": str(dev), "weights": weights,
                              "cpu_kernel": cpu_kernel})


def cpu_bf16_kernel() -> bool:
    """Whether bitsandbytes' ``Linear4bit`` runs its bfloat16 CPU kernel on this machine in inference
    (its own test: ``bitsandbytes.functional.has_avx512bf16()``); False without bitsandbytes."""
    try:
        from bitsandbytes.functional import has_avx512bf16
    except ImportError:  # pragma: no cover - depends on the install
        return False
    return bool(has_avx512bf16())


def _runs_bf16_kernel(device: torch.device, cpu_kernel: str) -> bool:
    """Whether bitsandbytes' 4-bit layers on ``device`` run its bfloat16 CPU kernel in inference."""
    return device.type == "cpu" and cpu_kernel == "auto" and cpu_bf16_kernel()


class _DeviceModel(nn.Module):
    """Runs a GPU model on CPU inputs and returns CPU outputs, so ``qlab.eval`` works unchanged."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.inner, self.device = model, device
        self.config = getattr(model, "config", None)

    def forward(self, *args: Any, **kw: Any) -> Any:
        mv = lambda t: t.to(self.device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        out = self.inner(*map(mv, args), **{k: mv(v) for k, v in kw.items()})
        if isinstance(out, torch.Tensor):
            return out.cpu()
        for k in ("last_hidden_state", "logits"):
            if getattr(out, k, None) is not None:
                setattr(out, k, getattr(out, k).cpu())
        return out


__all__ = ["BACKEND", "CPU_KERNELS", "DEVICES", "FORMATS", "check_cpu_kernel", "check_device", "check_threshold", "cpu_bf16_kernel", "quantize", "quantized_linear"]
