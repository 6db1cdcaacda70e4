"""Zoo models as OpenVINO IR (``.xml`` graph + ``.bin`` weights), compiled for the CPU plugin.

**Why through ONNX.** OpenVINO reads a model two ways: ``ov.convert_model`` (the ``ovc`` model
conversion API, which takes a torch module directly) or ``ov.Core().read_model`` on a file in a
format it has a frontend for (ONNX among them). qlab takes the second path:

* digits-cnn and MiniLM-L6 reuse the traced, checked ONNX export of the ONNX Runtime backend
  (:func:`qlab.backends.onnxruntime.float_onnx`), so both runtimes execute the *same* graph;
* SmolLM2 is traced here (:func:`export_lm_onnx`): logits of ``input_ids`` with no KV cache, an
  all-ones attention mask passed in (without one, transformers 5 builds the causal mask with
  ``aten::diff``, which neither the ONNX exporter nor ``ovc`` converts) and eager attention;
* ``read_model`` runs the ONNX frontend alone; ``ovc``'s ``convert_model`` of the torch module
  fails on SmolLM2 without the mask workaround (same ``aten::diff``) and would trace the model a
  second way. OpenVINO's telemetry client stays off either way (:mod:`qlab._offline`).

**Precision.** On a CPU with AVX512-BF16/AMX the CPU plugin's default ``INFERENCE_PRECISION_HINT``
is ``bf16``: an "fp32" IR then runs its float ops in bfloat16 (MiniLM hidden states and SmolLM2
logits move by ~1e-2 .. 1). qlab compiles with ``precision="f32"`` by default so a quantized row
differs from the float row by its quantization only; ``precision="bf16"`` is OpenVINO's own
default, timed as a row of its own.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.model import Loaded, weights_digest
from ...files import atomic_path

BACKEND = "openvino"
KINDS = ("image-classifier", "sentence-encoder", "causal-lm")
PRECISIONS = ("f32", "bf16")
OPSET = 17

_IRS: dict[tuple[int, str, str], Path] = {}


def _ov() -> Any:
    import openvino as ov

    return ov


_CORE: list[Any] = []


def core() -> Any:
    """The process's ``openvino.Core`` (one per process: it owns the plugins and their caches)."""
    if not _CORE:
        _CORE.append(_ov().Core())
    return _CORE[0]


def check_kind(m: Loaded) -> None:
    if getattr(m, "kind", None) not in KINDS:
        raise ValueError(f"{BACKEND} backend: converting a {getattr(m, 'kind', None)!r} model "
                         f"({getattr(m, 'name', m)}) is not supported; it supports {', '.join(KINDS)}")


class _LMGraph(nn.Module):
    """``input_ids -> logits`` of a causal LM, no cache, all-ones mask (module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False).logits


def export_lm_onnx(m: Loaded, path: str | os.PathLike, opset: int = OPSET) -> Path:
    """Trace a causal LM to ONNX: input ``input_ids`` ``(batch, sequence)`` int64, output
    ``logits`` ``(batch, sequence, vocab)``, both axes dynamic."""
    model = copy.deepcopy(m.model).eval()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    ids = torch.randint(0, 1000, (2, 16))
    path = Path(path)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_LMGraph(model), (ids,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["input_ids"], output_names=["logits"], do_constant_folding=True,
                              dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                            "logits": {0: "batch", 1: "sequence"}})
    return path


def save_ir(model: Any, xml: str | os.PathLike) -> Path:
    """Write an ``ov.Model`` as ``xml`` + the ``.bin`` beside it, atomically: both are written under
    temporary names first (a failed write leaves no half pair), weights kept in float32."""
    xml = Path(xml)
    tmp = xml.with_name(f".{xml.stem}.{os.getpid()}.tmp.xml")
    try:
        _ov().save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp, xml)
    finally:
        for p in (tmp, tmp.with_suffix(".bin")):
            p.unlink(missing_ok=True)
    return xml


def float_ir(m: Loaded, directory: str | os.PathLike | None = None) -> Path:
    """The float32 IR of ``m`` (``<model>-<digest>.fp32.xml``), converted once per process for the
    same weights."""
    check_kind(m)
    from ..onnxruntime.export import workdir

    fp = weights_digest(m.model)
    key = (id(m.model), fp, str(directory))
    if key in _IRS and _IRS[key].is_file():
        return _IRS[key]
    d = workdir(directory)
    xml = d / f"{m.name}-{fp[:16]}.fp32.xml"
    if m.kind == "causal-lm":
        onnx = export_lm_onnx(m, d / f".{m.name}-{fp[:16]}.lm.onnx")
        try:
            save_ir(core().read_model(str(onnx)), xml)
        finally:
            onnx.unlink(missing_ok=True)
    else:
        from ..onnxruntime.quantize import float_onnx

        save_ir(core().read_model(str(float_onnx(m, directory))), xml)
    _IRS[key] = xml
    return xml


def derived(src: Path, tag: str) -> Path:
    """``<model>-<digest>.<tag>.xml`` beside the float IR."""
    return src.with_name(src.name.removesuffix(".fp32.xml") + f".{tag}.xml")


def compile_ir(model: Any, threads: int | None = None, precision: str = "f32",
               dynamic_quantization: int | None = None) -> Any:
    """A ``CompiledModel`` on the CPU plugin: ``precision`` of the float ops (``INFERENCE_PRECISION_HINT``),
    ``threads`` inference threads (default: torch's thread count, so both runtimes get the same cores).

    ``dynamic_quantization``: ``DYNAMIC_QUANTIZATION_GROUP_SIZE``. For a ``MatMul`` with compressed
    (int8/int4) weights the CPU plugin by default also quantizes the *activations* to int8 on the
    fly, one scale per 32 values, and runs an integer kernel (so a "weight-only" row is W4A8 /
    W8A8 at run time); 0 turns that off (what the cross-check tests use), ``None`` keeps the
    plugin's default (what the tables time)."""
    if precision not in PRECISIONS:
        raise ValueError(f"{BACKEND}: precision must be one of {PRECISIONS}, got {precision!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"{BACKEND}: threads must be a positive int, got {threads!r}")
    src = str(model) if isinstance(model, str | os.PathLike) else model
    cfg = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
           "PERFORMANCE_HINT": "LATENCY"}
    if dynamic_quantization is not None:
        cfg["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = dynamic_quantization
    return core().compile_model(src, "CPU", cfg)


def ir_weight_bytes(model: Any) -> int:
    """Bytes of every ``Constant`` of an IR (weights, packed int4/int8 codes, scales, zero points)."""
    return int(sum(op.get_byte_size() for op in model.get_ops() if op.get_type_name() == "Constant"))


def ir_disk_bytes(xml: str | os.PathLike) -> int:
    """Size of the IR on disk: the ``.xml`` plus its ``.bin``."""
    xml = Path(xml)
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def _np(t: Any, dtype: Any) -> np.ndarray:
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return np.ascontiguousarray(a, dtype=dtype)


class OvModule(nn.Module):
    """A ``CompiledModel`` behind the call signature of the torch model it replaces, so ``qlab.eval``
    runs it unchanged: digits-cnn ``(x) -> logits``; a sentence encoder ``(**tokenizer batch) ->
    obj.last_hidden_state``; a causal LM ``(input_ids, ...) -> obj.logits``. :meth:`recompile`
    sets the thread count (what :func:`qlab.backends.compare.compare` does for ``threads=``)."""

    def __init__(self, path: Path, kind: str, config: Any = None, precision: str = "f32",
                 threads: int | None = None) -> None:
        super().__init__()
        self.path, self.kind, self.config, self.precision = path, kind, config, precision
        self.recompile(threads)

    def recompile(self, threads: int | None = None) -> None:
        self.compiled = compile_ir(self.path, threads, self.precision)
        self.input_names = [next(iter(i.get_names())) for i in self.compiled.inputs]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.compiled(feeds)[0]

    def feeds(self, batch: Any) -> dict[str, np.ndarray]:
        """The input dict of one qlab batch (an image tensor, a tokenizer dict or token ids)."""
        if self.kind == "image-classifier":
            x = batch["x"] if isinstance(batch, dict) else batch
            if not isinstance(x, torch.Tensor | np.ndarray) or np.ndim(x) != 4 or tuple(np.shape(x)[1:]) != (1, 8, 8):
                raise ValueError(f"{BACKEND}: digits-cnn takes images of shape (batch, 1, 8, 8), got "
                                 f"{getattr(x, 'shape', type(x).__name__)}")
            return {self.input_names[0]: _np(x, np.float32)}
        if self.kind == "causal-lm":
            ids = batch["input_ids"] if isinstance(batch, dict) else batch
            if not isinstance(ids, torch.Tensor | np.ndarray) or np.ndim(ids) != 2:
                raise ValueError(f"{BACKEND}: a causal LM takes input_ids of shape (batch, sequence), got "
                                 f"{getattr(ids, 'shape', type(ids).__name__)}")
            return {"input_ids": _np(ids, np.int64)}
        if not isinstance(batch, dict):
            raise ValueError(f"{BACKEND}: a sentence encoder takes a tokenizer dict, got {type(batch).__name__}")
        missing = [k for k in self.input_names if k not in batch]
        if missing:
            raise ValueError(f"{BACKEND}: batch lacks model inputs {missing} (has {sorted(batch)})")
        return {k: _np(batch[k], np.int64) for k in self.input_names}

    def forward(self, x: torch.Tensor | None = None, **batch: Any) -> Any:
        if self.kind == "image-classifier":
            return torch.from_numpy(self.run(self.feeds(x)))
        if self.kind == "causal-lm":
            ids = x if x is not None else batch.get("input_ids")
            return SimpleNamespace(logits=torch.from_numpy(self.run(self.feeds(ids))))
        return SimpleNamespace(last_hidden_state=torch.from_numpy(self.run(self.feeds(batch))))


__all__ = ["BACKEND", "KINDS", "PRECISIONS", "OvModule", "check_kind", "compile_ir", "core", "derived",
           "export_lm_onnx", "float_ir", "ir_disk_bytes", "ir_weight_bytes", "save_ir"]
