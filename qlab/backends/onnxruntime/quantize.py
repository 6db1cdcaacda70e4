"""ONNX Runtime quantization (``onnxruntime.quantization``), run on the CPU execution provider.

* :func:`quantize_dynamic` -- ``quantize_dynamic``: each ``MatMul`` with a constant weight
  becomes ``DynamicQuantizeLinear`` (activations: uint8, asymmetric, one scale per tensor per
  call) + ``MatMulInteger`` (int8 weights, symmetric, ``s = max|w| / 127``) + a float rescale.
* :func:`quantize_static` -- ``quantize_static`` in **QDQ** format: ``QuantizeLinear`` /
  ``DequantizeLinear`` pairs around the quantized ops with ranges from a calibration pass
  (:mod:`.calibration`: min-max, entropy, percentile or distribution). ORT's graph optimizer
  fuses each ``DQ -> op -> Q`` into an integer kernel (``QLinearConv``, ``QLinearMatMul``...)
  when the session is created.
* :func:`quantize_weight_only` -- ``MatMulNBitsQuantizer``: each constant ``MatMul`` weight
  becomes blockwise 4-bit (or 8-bit) codes with a float scale (and a zero-point unless
  symmetric) per ``block_size`` input values, executed by the ``MatMulNBits`` contrib kernel.

Every function exports the float model first (:func:`.export.export`, cached per process)
and returns a :class:`qlab.backends.compare.BackendModel` whose ``.model`` is an
:class:`.export.OrtModule` around the session; ``.path`` is the quantized ``.onnx`` file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.model import Loaded, weights_digest
from ...files import atomic_path
from ..model import BackendModel
from .calibration import BatchReader, as_batches, calibration_method
from .export import BACKEND, OrtModule, export, session, workdir

DYNAMIC_WEIGHTS = ("int8", "uint8")
STATIC_WEIGHTS = ("int8", "uint8")
STATIC_ACTIVATIONS = ("uint8", "int8")
WEIGHT_ONLY = ("int4", "int8")
QUANTIZED_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QuantizeLinear", "MatMulNBits",
                 "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul"}

_EXPORTS: dict[tuple[int, str, str], Path] = {}


def _unsupported(fmt: object, method: str, supported: tuple[str, ...]) -> ValueError:
    return ValueError(f"{BACKEND} backend cannot run {method} quantization with format {fmt!r}; "
                      f"it supports: {', '.join(supported)}")


def _fingerprint(model: torch.nn.Module) -> str:
    """A hash of all the weights' bytes (a sum would give permuted rows the same file)."""
    return weights_digest(model)


def float_onnx(m: Loaded, directory: str | os.PathLike | None = None) -> Path:
    """The exported float32 ONNX file of ``m`` (exported once per process for the same weights;
    the file name carries a digest of the weights, so variants of one model never collide)."""
    fp = _fingerprint(m.model)
    key = (id(m.model), fp, str(directory))
    if key not in _EXPORTS or not _EXPORTS[key].is_file():
        digest = fp[:16]
        _EXPORTS[key] = export(m, workdir(directory) / f"{m.name}-{digest}.fp32.onnx")
    return _EXPORTS[key]


def _derived(src: Path, tag: str) -> Path:
    """``<model>-<digest>.<tag>.onnx`` beside the float file."""
    return src.with_name(src.name.removesuffix(".fp32.onnx") + f".{tag}.onnx")


def onnx_weight_bytes(path: str | os.PathLike) -> int:
    """Bytes of all initializers of an ONNX file (weights, packed codes, scales, zero-points)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    return int(sum(len(t.raw_data) if t.raw_data else numpy_helper.to_array(t).nbytes for t in proto.graph.initializer))


def _wrap(m: Loaded, path: Path, scheme: str, **info: Any) -> BackendModel:
    import dataclasses

    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    if scheme != "fp32" and not ops & QUANTIZED_OPS:
        raise ValueError(f"{BACKEND}: {scheme} quantized no layer of {m.name} (graph ops: {sorted(ops)}); "
                         f"the model has no layer this scheme supports")
    cfg = getattr(m.model, "config", None)
    module = OrtModule(session(path), m.kind, cfg)
    loaded = dataclasses.replace(m, model=module)
    return BackendModel(BACKEND, scheme, loaded, onnx_weight_bytes(path), path.stat().st_size, path,
                        info={"ops": sorted(ops), **info})


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantization tools print progress and log warnings/INFO on the root logger."""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None  # makes their basicConfig() a no-op
    if guard:
        root.addHandler(guard)
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        if guard:
            root.removeHandler(guard)


def float_session(m: Loaded, directory: str | os.PathLike | None = None) -> BackendModel:
    """The float32 model exported to ONNX and run by ORT (the ORT reference row)."""
    return _wrap(m, float_onnx(m, directory), "fp32")


def quantize_dynamic(
    m: Loaded, weights: str = "int8", per_channel: bool = False, directory: str | os.PathLike | None = None
) -> BackendModel:
    """Dynamic W8A8 of every ``MatMul``/``Conv`` with a constant weight (Linear layers; the
    embedding ``Gather`` and the activation-by-activation attention products stay float)."""
    if weights not in DYNAMIC_WEIGHTS:
        raise _unsupported(weights, "dynamic", DYNAMIC_WEIGHTS)
    src = float_onnx(m, directory)
    dst = _derived(src, f"dynamic-{weights}{'-pc' if per_channel else ''}")
    quantize_dynamic_onnx(src, dst, weights, per_channel)
    scheme = f"dynamic W8A8 ({weights} weights per {'channel' if per_channel else 'tensor'}, uint8 activations)"
    return _wrap(m, dst, scheme, weights=weights, per_channel=per_channel)


def quantize_dynamic_onnx(src: str | os.PathLike, dst: str | os.PathLike, weights: str = "int8",
                          per_channel: bool = False) -> Path:
    """The file-level step of :func:`quantize_dynamic` (any ONNX file): ``MatMul`` with a constant
    weight and ``Conv`` only, weights ``int8`` (symmetric) or ``uint8`` (asymmetric)."""
    if weights not in DYNAMIC_WEIGHTS:
        raise _unsupported(weights, "dynamic", DYNAMIC_WEIGHTS)
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # a ModelProto, not the path: given a path, ORT writes ``<src>-inferred.onnx`` beside it (left
    # there if it fails); given a model, it works in its own temporary directory
    with _quiet(), atomic_path(dst) as tmp:  # a failed run leaves no half file at ``dst``
        quantize_dynamic(onnx.load(str(src)), tmp, op_types_to_quantize=["MatMul", "Conv"], per_channel=per_channel,
                         weight_type=QuantType.QInt8 if weights == "int8" else QuantType.QUInt8,
                         extra_options={"MatMulConstBOnly": True})
    return Path(dst)


def quantize_static(
    m: Loaded,
    calibration: Sequence[Any] | str | None,
    method: str = "minmax",
    weights: str = "int8",
    activations: str = "uint8",
    per_channel: bool = True,
    op_types: Sequence[str] | None = None,
    directory: str | os.PathLike | None = None,
) -> BackendModel:
    """Static QDQ quantization calibrated on qlab batches (or text for a sentence encoder).

    ``op_types``: the ONNX ops to quantize; default every supported op for digits-cnn, and
    the weight ``MatMul``s (the Linear layers) for a sentence encoder, whose softmax,
    LayerNorm and GELU inputs lose too much at 8 bits per tensor.
    """
    if weights not in STATIC_WEIGHTS:
        raise _unsupported(weights, "static (weights)", STATIC_WEIGHTS)
    if activations not in STATIC_ACTIVATIONS:
        raise _unsupported(activations, "static (activations)", STATIC_ACTIVATIONS)
    cal = calibration_method(method)
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    cal_batches = as_batches(m, calibration)  # fails fast on no batches, before exporting
    src = float_onnx(m, directory)
    reader = BatchReader(cal_batches, [i.name for i in session(src).get_inputs()])
    if op_types is None and m.kind == "sentence-encoder":
        op_types = ("MatMul",)
    pre = _derived(src, "fp32-preprocessed")
    ops_tag = "-" + "-".join(op_types) if op_types else ""
    dst = _derived(src, f"static-{method}-w{weights}-a{activations}{'-pc' if per_channel else ''}{ops_tag}")
    with _quiet():
        if not pre.is_file():  # reused once written: a killed run must not leave half a file there
            with atomic_path(pre) as tmp:
                quant_pre_process(str(src), str(tmp), skip_symbolic_shape=True)  # symbolic inference fails on BERT
        with atomic_path(dst) as tmp:
            quantize_static(onnx.load(str(pre)), tmp, reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            op_types_to_quantize=list(op_types) if op_types else None,
                            activation_type=qtype[activations], weight_type=qtype[weights], calibrate_method=cal,
                            extra_options={"MatMulConstBOnly": True})
    scheme = f"static QDQ W8A8 ({method}, {activations} activations)"
    return _wrap(m, dst, scheme, method=method, batches=len(reader), per_channel=per_channel)


def quantize_weight_only(
    m: Loaded, weights: str = "int4", block_size: int = 32, symmetric: bool = False,
    directory: str | os.PathLike | None = None,
) -> BackendModel:
    """Blockwise weight-only quantization of constant ``MatMul`` weights to ``MatMulNBits``.

    Blocks run along the input dimension (a row of the torch ``Linear`` weight); ``symmetric=False``
    (ORT's default) stores a uint4 zero-point per block: qlab's ``int4`` with ``symmetric=False,
    granularity="group"`` up to near-tie rounding; ``symmetric=True`` uses ``s = v / -8`` with ``v``
    the block's largest-magnitude weight (sign kept), i.e. the full ``[-8, 7]`` range (llama.cpp's
    Q4_0 rule). :func:`.simulate.block_weights` reproduces both bit for bit.
    """
    _check_weight_only(weights, block_size)
    src = float_onnx(m, directory)
    dst = _derived(src, f"matmulnbits-{weights}-b{block_size}{'-sym' if symmetric else ''}")
    quantize_weight_only_onnx(src, dst, weights, block_size, symmetric)
    scheme = f"weight-only {weights} MatMulNBits (block {block_size}, {'symmetric' if symmetric else 'zero-point'})"
    return _wrap(m, dst, scheme, block_size=block_size, symmetric=symmetric, bits=int(weights[3:]))


def _check_weight_only(weights: str, block_size: int) -> None:
    if weights not in WEIGHT_ONLY:
        raise _unsupported(weights, "weight-only (MatMulNBits)", WEIGHT_ONLY)
    if not isinstance(block_size, int) or block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"{BACKEND}: block_size must be a power of two >= 16, got {block_size!r}")


def quantize_weight_only_onnx(src: str | os.PathLike, dst: str | os.PathLike, weights: str = "int4",
                              block_size: int = 32, symmetric: bool = False) -> Path:
    """The file-level step of :func:`quantize_weight_only` (any ONNX file)."""
    _check_weight_only(weights, block_size)
    import onnx

    with _quiet():
        # imported here: the module calls logging.basicConfig(level=INFO) at import (_quiet guards it)
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        q = MatMulNBitsQuantizer(onnx.load(str(src)), bits=int(weights[3:]), block_size=block_size,
                                 is_symmetric=symmetric)
        q.process()
        with atomic_path(dst) as tmp:
            q.model.save_model_to_file(str(tmp), use_external_data_format=False)
    return Path(dst)


def run(bm: BackendModel, batch: Any) -> np.ndarray:
    """The raw ORT output (logits or hidden states) of one qlab batch."""
    from .export import feeds

    sess = bm.model.session
    return sess.run(None, feeds(batch, [i.name for i in sess.get_inputs()]))[0]


__all__ = [
    "DYNAMIC_WEIGHTS",
    "STATIC_ACTIVATIONS",
    "STATIC_WEIGHTS",
    "WEIGHT_ONLY",
    "float_onnx",
    "float_session",
    "onnx_weight_bytes",
    "quantize_dynamic",
    "quantize_dynamic_onnx",
    "quantize_static",
    "quantize_weight_only",
    "quantize_weight_only_onnx",
    "run",
]
