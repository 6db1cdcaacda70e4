"""Export a zoo model to ONNX (``torch.onnx.export``) and run ONNX files on ONNX Runtime's CPU provider.

**Tracing vs scripting vs dynamo.** ``torch.onnx.export`` has had three ways to turn a module
into a graph:

* *tracing* (TorchScript tracer, ``dynamo=False``, what qlab uses): run the model once on an
  example input and record the tensor operations that executed. Python control flow is frozen
  to the branch the example took and Python-side values (shapes read with ``.size()`` inside
  ``if``s, loop counts) can become constants -- fine for BERT and a CNN, whose graphs do not
  depend on the data. It needs nothing beyond torch and ``onnx``.
* *scripting* (``torch.jit.script`` then export): compiles the Python source, so ``if``/``for``
  on tensor values survive as ONNX ``If``/``Loop``. transformers' models are not scriptable, and
  TorchScript is deprecated, so it is not used here.
* *dynamo* (``dynamo=True``, the default in recent PyTorch releases): ``torch.export`` captures an FX
  graph with symbolic shapes and onnxscript translates it. It is the future path but needs the
  ``onnxscript`` package; the traced graphs are what ORT's quantization tools were built on.

**Opset** 17: the first with a native ``LayerNormalization`` (BERT's normalization stays one
node), supported by every ORT release qlab allows, and by ``onnxruntime.quantization``
(QDQ needs >= 10 for per-tensor, >= 13 for per-channel ``QuantizeLinear``).

**Dynamic axes.** The example batch fixes every dimension unless it is declared dynamic:
qlab marks the batch axis (and the sequence axis of text inputs) as named symbolic dimensions,
so one file serves batch 1 and batch 32 and sentences of any length. IR version is capped at
10 so that older ORT releases load the file.
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from ...core.model import Loaded
from ...files import atomic_path

BACKEND = "onnxruntime"
OPSET = 17
IR_VERSION = 10
KINDS = ("sentence-encoder", "image-classifier")
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class _EncoderGraph(nn.Module):
    """The transformer of a sentence encoder with positional inputs and one output (hidden states)."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).last_hidden_state


def _eager_attention(model: nn.Module) -> nn.Module:
    """A copy of a transformers model using the plain ("eager") attention implementation.

    The tracer's translation of ``scaled_dot_product_attention`` with BERT's padding mask gives
    a graph whose outputs differ from PyTorch's (max error ~1 on MiniLM hidden states, measured
    with transformers 5 / torch 2.13); the eager softmax(QK^T)V path exports exactly
    (max error ~2e-5). The user's model is left as it is.
    """
    model = copy.deepcopy(model)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:
        model.config._attn_implementation = "eager"
    return model


_SCRATCH: list[Path] = []


def workdir(path: str | os.PathLike | None = None) -> Path:
    """``path`` (created if needed), or this process's scratch directory for ONNX files (one
    temporary directory, removed when the interpreter exits: pass ``directory=`` to keep files)."""
    if path is not None:
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        return d
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="qlab-onnx-")))
        atexit.register(shutil.rmtree, _SCRATCH[0], ignore_errors=True)
    return _SCRATCH[0]


def export(m: Loaded, path: str | os.PathLike, opset: int = OPSET) -> Path:
    """Write ``m`` (a :class:`qlab.models.LoadedModel`) as an ONNX file with a dynamic batch axis.

    Inputs: ``x`` ``(batch, 1, 8, 8)`` for digits-cnn; ``input_ids``, ``attention_mask``,
    ``token_type_ids`` ``(batch, sequence)`` int64 for a sentence encoder. Output ``logits`` or
    ``last_hidden_state``.
    """
    if m.kind not in KINDS:
        raise ValueError(f"{BACKEND} backend: exporting a {m.kind} ({m.name}) is not supported; it supports {KINDS}")
    path = Path(path)
    model = m.model.eval()
    if m.kind == "image-classifier":
        args: tuple[torch.Tensor, ...] = (torch.zeros(2, 1, 8, 8),)
        names, outputs = ["x"], ["logits"]
        axes = {"x": {0: "batch"}, "logits": {0: "batch"}}
    else:
        enc = m.tokenizer(["an example sentence for tracing", "a second one"], padding=True, return_tensors="pt")
        names = [k for k in TEXT_INPUTS if k in enc]
        args, outputs = tuple(enc[k] for k in names), ["last_hidden_state"]
        model = _EncoderGraph(_eager_attention(model), tuple(names))
        axes = {k: {0: "batch", 1: "sequence"} for k in [*names, *outputs]}
    import onnx

    with atomic_path(path) as tmp:  # a failed export leaves no half file at ``path``
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript deprecation and tracer warnings
            torch.onnx.export(
                model, args, str(tmp), dynamo=False, opset_version=opset, input_names=names,
                output_names=outputs, dynamic_axes=axes, do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        if proto.ir_version > IR_VERSION:
            proto.ir_version = IR_VERSION
            onnx.save(proto, str(tmp))
    return path


def session(path: str | os.PathLike, threads: int | None = None) -> Any:
    """An ``InferenceSession`` on the CPU execution provider (all graph optimizations on, which
    is what fuses QDQ pairs into integer kernels), using ``threads`` intra-op threads
    (default: torch's thread count, so both runtimes get the same cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # ORT's idle intra-op threads spin by default: timed round-robin against PyTorch on a 2-core
    # machine they took the CPU from the next model (PyTorch batch-1 MiniLM measured 1.1 s, not ~25 ms)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OrtModule(nn.Module):
    """An ``InferenceSession`` behind the call signature of the torch model it replaces, so
    ``qlab.eval`` runs it unchanged: digits-cnn ``(x) -> logits``; a sentence encoder
    ``(**tokenizer batch) -> obj.last_hidden_state``."""

    def __init__(self, sess: Any, kind: str, config: Any = None) -> None:
        super().__init__()
        self.session, self.kind, self.config = sess, kind, config
        self.input_names = [i.name for i in sess.get_inputs()]

    def forward(self, x: torch.Tensor | None = None, **batch: torch.Tensor) -> Any:
        if self.kind == "image-classifier":
            (out,) = self.session.run(None, {self.input_names[0]: _np(x, np.float32)})
            return torch.from_numpy(out)
        feeds = {k: _np(batch[k], np.int64) for k in self.input_names}
        (out,) = self.session.run(None, feeds)
        return SimpleNamespace(last_hidden_state=torch.from_numpy(out))


def _np(t: Any, dtype: Any) -> np.ndarray:
    a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return np.ascontiguousarray(a, dtype=dtype)


def feeds(batch: Any, input_names: list[str]) -> dict[str, np.ndarray]:
    """An ORT feed dict from a qlab batch (an image tensor or a tokenizer dict)."""
    if isinstance(batch, dict):
        missing = [k for k in input_names if k not in batch]
        if missing:
            raise ValueError(f"{BACKEND}: batch lacks model inputs {missing} (has {sorted(batch)})")
        return {k: _np(batch[k], np.int64) for k in input_names}
    return {input_names[0]: _np(batch, np.float32)}


__all__ = ["IR_VERSION", "KINDS", "OPSET", "OrtModule", "export", "feeds", "session", "workdir"]
