"""NNCF quantization of OpenVINO IR, run on the OpenVINO CPU plugin.

* :func:`quantize_static` -- ``nncf.quantize``: 8-bit post-training quantization with calibration
  data (qlab's calibration batches). NNCF inserts ``FakeQuantize`` ops (int8 weights per output
  channel, symmetric; uint8/int8 activations per tensor) with ranges from a statistics pass over
  ``subset_size`` samples, plus fast bias correction; the CPU plugin turns each
  ``FakeQuantize -> op`` into an integer kernel (VNNI / AMX-INT8 where the CPU has them).
  ``model_type=TRANSFORMER`` for a sentence encoder (NNCF's rules for attention: softmax, layer
  norm and the residual adds stay float; "mixed" preset = symmetric weights, asymmetric activations).
* :func:`compress_weights` -- ``nncf.compress_weights``: weight-only compression of every
  ``MatMul`` (and ``Gather`` embedding) weight. Codes are stored as ``u8``/``i8``/``u4``/``i4``
  ``Constant``s with an f16 scale (and a zero point for the ``_asym`` modes) per output channel
  (``int8_*``) or per ``group_size`` inputs (``int4_*``); the CPU plugin dequantizes in its
  matmul kernels. The ``int4`` modes keep the embedding and the last layer in ``int8_asym``
  (NNCF's "backup" precision) unless ``all_layers=True``. Data-aware options (need ``dataset``):
  ``awq`` (activation-aware scaling, Lin et al. 2023, arXiv:2306.00978: scales input channels of
  a ``MatMul`` and folds the inverse into the previous op, where the graph has that pattern) and
  ``scale_estimation`` (refits each group's scale to minimise the layer's output error on the
  calibration activations).

Every function returns a :class:`qlab.backends.model.BackendModel` whose ``.model`` is an
:class:`.convert.OvModule`; ``.path`` is the IR ``.xml``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...core.model import Loaded
from ..model import BackendModel
from .convert import (
    BACKEND,
    OvModule,
    check_kind,
    core,
    derived,
    float_ir,
    ir_disk_bytes,
    ir_weight_bytes,
    save_ir,
)

WEIGHT_MODES = ("int8_asym", "int8_sym", "int4_asym", "int4_sym")
STATIC_PRESETS = ("performance", "mixed")
QUANTIZED_TYPES = {"u8", "i8", "u4", "i4"}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """NNCF logs INFO tables and draws rich progress bars on stdout: both silenced."""
    log = logging.getLogger("nncf")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def weight_types(model: Any) -> dict[str, int]:
    """``{element type: count}`` of the stored codes of compressed weights: integer ``Constant``s
    whose ``Convert`` feeds the first input of a ``Subtract`` / ``Multiply`` (zero points feed the
    second), e.g. ``{"u4": 36, "u8": 1}``."""
    out: dict[str, int] = {}
    for op in model.get_ops():
        if op.get_type_name() != "Constant" or op.get_element_type().to_string() not in QUANTIZED_TYPES:
            continue
        for conv in op.output(0).get_target_inputs():
            if conv.get_node().get_type_name() != "Convert":
                continue
            uses = conv.get_node().output(0).get_target_inputs()
            if any(u.get_index() == 0 and u.get_node().get_type_name() in ("Subtract", "Multiply") for u in uses):
                t = op.get_element_type().to_string()
                out[t] = out.get(t, 0) + 1
                break
    return out


def _wrap(m: Loaded, xml: Path, scheme: str, precision: str = "f32", **info: Any) -> BackendModel:
    model = core().read_model(str(xml))
    ops = sorted({op.get_type_name() for op in model.get_ops()})
    codes = weight_types(model)
    if scheme != "fp32" and not codes and "FakeQuantize" not in ops:
        raise ValueError(f"{BACKEND}: {scheme} quantized no layer of {m.name}; the model has no layer this scheme supports")
    module = OvModule(xml, m.kind, getattr(m.model, "config", None), precision)
    loaded = dataclasses.replace(m, model=module)
    return BackendModel(BACKEND, scheme, loaded, ir_weight_bytes(model), ir_disk_bytes(xml), xml,
                        info={"ops": ops, "weight_types": codes, "precision": precision, **info})


def float_model(m: Loaded, precision: str = "f32", directory: str | os.PathLike | None = None) -> BackendModel:
    """The float32 IR run by OpenVINO; ``precision="bf16"`` runs its float ops in bfloat16
    (OpenVINO's default on CPUs with AVX512-BF16 / AMX)."""
    bm = _wrap(m, float_ir(m, directory), "fp32", precision)
    if precision != "f32":
        bm.scheme = "fp32 IR, bf16 execution (CPU default)"
    return bm


def dataset(m: Loaded, batches: Sequence[Any]) -> Any:
    """An ``nncf.Dataset`` of qlab batches, each transformed to the IR's input dict."""
    import nncf

    if batches is None or len(batches) == 0:
        raise ValueError(f"{BACKEND}: calibration needs at least one batch (got none)")
    xml = float_ir(m)
    names = [next(iter(i.get_names())) for i in core().read_model(str(xml)).inputs]
    probe = OvModule.__new__(OvModule)
    probe.kind, probe.input_names = m.kind, names
    feeds = [probe.feeds(b) for b in batches]
    for f in feeds:
        for k, v in f.items():
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                raise ValueError(f"{BACKEND}: calibration input {k!r} contains NaN or Inf")
    return nncf.Dataset(feeds)


def quantize_static(
    m: Loaded, calibration: Sequence[Any] | None, preset: str | None = None, subset_size: int = 300,
    directory: str | os.PathLike | None = None,
) -> BackendModel:
    """8-bit static PTQ with ``nncf.quantize`` on qlab calibration batches (see the module docstring).
    ``preset``: ``"performance"`` (symmetric activations) or ``"mixed"`` (asymmetric); default
    NNCF's own, ``mixed`` for a sentence encoder and ``performance`` otherwise. ``subset_size``:
    calibration *samples* (NNCF counts dataset items: one qlab batch each)."""
    check_kind(m)
    if m.kind == "causal-lm":
        raise ValueError(f"{BACKEND}: static int8 PTQ is offered for digits-cnn and sentence encoders; for a "
                         f"causal LM ({m.name}) use compress_weights")
    preset = preset or ("mixed" if m.kind == "sentence-encoder" else "performance")
    if preset not in STATIC_PRESETS:
        raise ValueError(f"{BACKEND}: preset must be one of {STATIC_PRESETS}, got {preset!r}")
    if not isinstance(subset_size, int) or subset_size < 1:
        raise ValueError(f"{BACKEND}: subset_size must be a positive int, got {subset_size!r}")
    import nncf

    ds = dataset(m, calibration)  # validates the batches before any work
    src = float_ir(m, directory)
    kw: dict[str, Any] = {"preset": getattr(nncf.QuantizationPreset, preset.upper()), "subset_size": subset_size}
    if m.kind == "sentence-encoder":
        kw["model_type"] = nncf.ModelType.TRANSFORMER
    with quiet():
        q = nncf.quantize(core().read_model(str(src)), ds, **kw)
    dst = save_ir(q, derived(src, f"nncf-int8-{preset}"))
    return _wrap(m, dst, f"static int8 PTQ (nncf.quantize, {preset})", preset=preset)


def _check_weights(mode: str, group_size: int, ratio: float) -> None:
    if mode not in WEIGHT_MODES:
        raise ValueError(f"{BACKEND}: weight compression mode must be one of {WEIGHT_MODES}, got {mode!r}")
    if mode.startswith("int8") and group_size != -1:
        raise ValueError(f"{BACKEND}: {mode} is per output channel: group_size must be -1, got {group_size!r}")
    if mode.startswith("int4") and (not isinstance(group_size, int) or group_size != -1 and (group_size < 16
                                                                                           or group_size & (group_size - 1))):
        raise ValueError(f"{BACKEND}: group_size must be -1 (per channel) or a power of two >= 16, got {group_size!r}")
    if not isinstance(ratio, int | float) or not 0 < ratio <= 1:
        raise ValueError(f"{BACKEND}: ratio must be in (0, 1], got {ratio!r}")


def compress_weights_ir(
    src: Any, mode: str = "int4_asym", group_size: int = 128, ratio: float = 1.0, all_layers: bool = False,
    data: Any = None, awq: bool = False, scale_estimation: bool = False, subset_size: int = 128,
) -> Any:
    """The model-level step of :func:`compress_weights`: an ``ov.Model`` in, the compressed
    ``ov.Model`` out (``src`` is not modified)."""
    import nncf

    _check_weights(mode, group_size, ratio)
    if (awq or scale_estimation) and data is None:
        raise ValueError(f"{BACKEND}: awq and scale_estimation are data-aware: pass calibration batches")
    kw: dict[str, Any] = {"mode": getattr(nncf.CompressWeightsMode, mode.upper())}
    if mode.startswith("int4"):
        kw |= {"group_size": group_size, "ratio": ratio, "all_layers": all_layers}
        if data is not None:
            kw |= {"dataset": data, "awq": awq, "scale_estimation": scale_estimation, "subset_size": subset_size}
    with quiet():
        return nncf.compress_weights(src.clone(), **kw)


def compress_weights(
    m: Loaded, mode: str = "int4_asym", group_size: int | None = None, ratio: float = 1.0,
    all_layers: bool = False, calibration: Sequence[Any] | None = None, awq: bool = False,
    scale_estimation: bool = False, directory: str | os.PathLike | None = None,
) -> BackendModel:
    """Weight-only compression with ``nncf.compress_weights`` (see the module docstring).

    ``group_size``: inputs per scale of the ``int4`` modes (default 128; -1 = per output channel);
    ``int8`` modes are per output channel. ``ratio``: share of the int4-eligible weights put in
    int4 (the rest int8_asym). ``calibration``: batches for the data-aware ``awq`` /
    ``scale_estimation`` (ignored by the ``int8`` modes, which are data-free).
    """
    check_kind(m)
    if group_size is None:
        group_size = 128 if mode.startswith("int4") else -1
    _check_weights(mode, group_size, ratio)
    if (awq or scale_estimation) and not calibration:
        raise ValueError(f"{BACKEND}: awq and scale_estimation are data-aware: pass calibration batches")
    data = dataset(m, calibration) if (awq or scale_estimation) else None
    src = float_ir(m, directory)
    q = compress_weights_ir(core().read_model(str(src)), mode, group_size, ratio, all_layers, data, awq,
                            scale_estimation)
    extras = [s for s, on in (("awq", awq), ("se", scale_estimation), ("all", all_layers)) if on]
    tag = "-".join([f"nncf-{mode}", *([f"g{group_size}"] if mode.startswith("int4") else []),
                    *([f"r{ratio:g}"] if ratio != 1 else []), *extras])
    dst = save_ir(q, derived(src, tag))
    opts = ", ".join([f"group {group_size}" if mode.startswith("int4") else "per channel",
                      *(["AWQ"] if awq else []), *(["scale estimation"] if scale_estimation else []),
                      *([f"ratio {ratio:g}"] if ratio != 1 else [])])
    return _wrap(m, dst, f"weights {mode} ({opts})", mode=mode, group_size=group_size, ratio=ratio, awq=awq,
                 scale_estimation=scale_estimation, all_layers=all_layers)


__all__ = ["QUANTIZED_TYPES", "STATIC_PRESETS", "WEIGHT_MODES", "compress_weights", "compress_weights_ir",
           "dataset", "float_model", "quantize_static", "quiet", "weight_types"]
