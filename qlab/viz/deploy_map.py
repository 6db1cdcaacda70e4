"""Lesson 12's deployment map: the targets the course names, what each runs natively, and whether
qlab ran it on this machine (with the measured row) or explains it only (with the reason).

Format lists are from each runtime's own documentation (ONNX Runtime quantization and contrib
ops, llama.cpp's ``ggml`` types, OpenVINO/NNCF weight compression, bitsandbytes, torch.ao,
TensorRT's supported precisions, MLX's ``mx.quantize``, Qualcomm AI Engine Direct (QNN),
LiteRT/TFLite post-training quantization). :func:`deploy_map` joins the "ran here" rows with the
committed backend tables (``data/cache/backend_tables.json``) so their numbers are measured,
never typed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.report import format_table

RAN, EXPLAINED = "ran here", "explained only"

TARGETS: tuple[dict[str, str], ...] = (
    {"target": "ONNX Runtime", "backend": "onnxruntime", "hardware": "CPU (x86/ARM), GPU via CUDA/TensorRT/DirectML EPs",
     "formats": "int8/uint8 QDQ (static), dynamic int8 MatMulInteger, int4/int8 MatMulNBits (blockwise)",
     "status": RAN, "reason": "CPU execution provider (qlab.backends.onnxruntime)"},
    {"target": "llama.cpp", "backend": "llamacpp", "hardware": "CPU (AVX2/AVX512/NEON), Metal, CUDA, Vulkan",
     "formats": "GGUF: F16, Q8_0, Q6_K .. Q2_K, Q4_0/Q4_1/Q5_0, IQ4_XS and other i-quants",
     "status": RAN, "reason": "llama-cpp-python on CPU (qlab.backends.llamacpp; lesson 13 capstone rows)"},
    {"target": "OpenVINO", "backend": "openvino", "hardware": "Intel CPU (AVX2/AVX512/AMX), Intel GPU and NPU",
     "formats": "IR with FakeQuantize int8 (NNCF PTQ), u8/i8/u4/i4 compressed weights (+ dynamic int8 activations), bf16",
     "status": RAN, "reason": "CPU plugin (qlab.backends.openvino), NNCF quantize / compress_weights"},
    {"target": "Olive", "backend": "", "hardware": "whatever ONNX Runtime targets (it drives ORT's tools)",
     "formats": "ONNX Runtime's formats (its quantization passes call onnxruntime.quantization)",
     "status": EXPLAINED, "reason": "olive-ai is not in requirements.lock (no network to install it); its ORT "
     "static/dynamic quantization passes are the onnxruntime.quantization calls qlab's ORT backend makes directly"},
    {"target": "bitsandbytes", "backend": "bitsandbytes", "hardware": "NVIDIA GPU (CUDA); CPU kernels (slow path)",
     "formats": "LLM.int8 (int8 + fp16 outliers), NF4, FP4 (block 64, double quantization)",
     "status": RAN, "reason": "its CPU kernels here (qlab.backends.bitsandbytes); the CUDA path needs an NVIDIA GPU"},
    {"target": "torch.ao", "backend": "torch_native", "hardware": "CPU (x86 fbgemm/onednn, ARM qnnpack)",
     "formats": "int8 dynamic (Linear), int8 static (Conv/Linear, per-channel weights)",
     "status": RAN, "reason": "torch.ao.quantization on CPU (qlab.backends.torch_native)"},
    {"target": "TensorRT", "backend": "", "hardware": "NVIDIA GPU only",
     "formats": "int8 (calibrated or QDQ), fp8 e4m3 (Hopper+), int4 weight-only AWQ, nvfp4 (Blackwell), fp16/bf16",
     "status": EXPLAINED, "reason": "needs an NVIDIA GPU and CUDA; qlab simulates fp8_e4m3 and int4/int8 weights"},
    {"target": "MLX", "backend": "", "hardware": "Apple silicon (M-series), unified memory",
     "formats": "affine 4/8-bit (also 2/3/6) weights, group 32/64/128, fp16 scale and bias per group; mxfp4",
     "status": EXPLAINED, "reason": "runs only on Apple silicon; qlab simulates int4 asymmetric groups (scale + bias)"},
    {"target": "QNN / AIMET", "backend": "", "hardware": "Qualcomm Hexagon NPU, Adreno GPU, Kryo CPU",
     "formats": "w8a8, w8a16, w4a16 (AIMET-calibrated encodings), fp16",
     "status": EXPLAINED, "reason": "needs a Qualcomm SoC (NPU) and its SDK; qlab simulates int8/int4 per-channel"},
    {"target": "TFLite / LiteRT", "backend": "", "hardware": "Android/ARM CPU (XNNPACK), GPU delegate, Edge TPU, NNAPI",
     "formats": "full-integer int8 (per-channel weights), dynamic-range int8, float16, int16x8 activations",
     "status": EXPLAINED, "reason": "TensorFlow/LiteRT is not in the environment (qlab is PyTorch-based); the int8 "
     "schemes are the ones qlab's torch.ao and ORT rows measure"},
)


def _measured(tables: dict[str, Any], backend: str) -> dict[str, Any] | None:
    """The smallest MiniLM row of ``backend`` in the backend tables, with the float row's metric."""
    t = tables.get("minilm-l6")
    if t is None:
        return None
    rows = [r for r in t["rows"] if r["backend"] == backend and r["scheme"] != "fp32"]
    if not rows:
        return None
    r = min(rows, key=lambda r: r["disk_bytes"])
    return {"scheme": r["scheme"], "disk_mb": r["disk_bytes"] / 1e6, "cosine": r.get("cosine_mean"),
            "x_float": r["latency_ratio"]}


def deploy_map(tables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per target: :data:`TARGETS` plus, for the targets qlab ran, the measured MiniLM row
    of smallest disk size (``scheme``, ``disk_mb``, ``cosine``, ``x_float``). ``tables``: the
    ``rows`` of the backend-tables cache (default: the committed cache). llama.cpp's numbers are
    lesson 13's (SmolLM2 GGUF), so its measured columns stay empty here."""
    if tables is None:
        from .deploy import backend_tables

        tables = backend_tables()["rows"]
    out = []
    for t in TARGETS:
        row: dict[str, Any] = dict(t)
        m = _measured(tables, t["backend"]) if t["status"] == RAN and t["backend"] else None
        row |= m or {"scheme": "", "disk_mb": None, "cosine": None, "x_float": None}
        out.append(row)
    return out


def format_map(rows: Sequence[dict[str, Any]], measured: bool = True) -> str:
    """The map as text: target, hardware, formats, status; the measured columns with ``measured``."""
    cols: list[tuple[str, str, str | None]] = [("target", "target", None), ("status", "qlab", None),
                                               ("hardware", "hardware", None), ("formats", "native formats", None)]
    if measured:
        cols += [("scheme", "smallest measured row (MiniLM)", None), ("disk_mb", "MB", ".1f"),
                 ("cosine", "cosine", ".4f"), ("x_float", "x float", ".2f")]
    return format_table(list(rows), cols)


__all__ = ["EXPLAINED", "RAN", "TARGETS", "deploy_map", "format_map"]
