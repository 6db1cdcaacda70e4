"""One table of GGML block layouts: (ggml type id, values per block, bytes per part).

Bytes are written as the parts GGML stores, in storage order, so ``sum`` of a row is the block
size in bytes (e.g. Q4_0 = 2 (fp16 d) + 16 (32 packed nibbles) = 18 bytes per 32 values, 4.5
bits per weight). Ids are GGML's ``enum ggml_type`` values used in GGUF files.
"""

from __future__ import annotations

from .base import Layout

QK = 32  # legacy / IQ4_NL / MXFP4 block
QK_K = 256  # K-quant super-block

# name: (ggml type id, Layout)
GGML_TYPES: dict[str, tuple[int, Layout]] = {
    "f32": (0, Layout(1, (("value", 4),))),
    "f16": (1, Layout(1, (("value", 2),))),
    "q4_0": (2, Layout(QK, (("d fp16", 2), ("qs 32x4bit", 16)))),
    "q4_1": (3, Layout(QK, (("d fp16", 2), ("m fp16", 2), ("qs 32x4bit", 16)))),
    "q5_0": (6, Layout(QK, (("d fp16", 2), ("qh 32x1bit", 4), ("qs 32x4bit", 16)))),
    "q5_1": (7, Layout(QK, (("d fp16", 2), ("m fp16", 2), ("qh 32x1bit", 4), ("qs 32x4bit", 16)))),
    "q8_0": (8, Layout(QK, (("d fp16", 2), ("qs 32xint8", 32)))),
    "q2_k": (10, Layout(QK_K, (("scales 16x(4+4bit)", 16), ("qs 256x2bit", 64), ("d fp16", 2), ("dmin fp16", 2)))),
    "q3_k": (11, Layout(QK_K, (("hmask 256x1bit", 32), ("qs 256x2bit", 64), ("scales 16x6bit", 12), ("d fp16", 2)))),
    "q4_k": (12, Layout(QK_K, (("d fp16", 2), ("dmin fp16", 2), ("scales 8x(6+6bit)", 12), ("qs 256x4bit", 128)))),
    "q5_k": (13, Layout(QK_K, (("d fp16", 2), ("dmin fp16", 2), ("scales 8x(6+6bit)", 12), ("qh 256x1bit", 32), ("qs 256x4bit", 128)))),
    "q6_k": (14, Layout(QK_K, (("ql 256x4bit", 128), ("qh 256x2bit", 64), ("scales 16xint8", 16), ("d fp16", 2)))),
    "iq2_xxs": (16, Layout(QK_K, (("d fp16", 2), ("qs 32x(8bit grid+7bit signs)+8x4bit scales", 64)))),
    "iq2_xs": (17, Layout(QK_K, (("d fp16", 2), ("qs 32x(9bit grid+7bit signs)", 64), ("scales 16x4bit", 8)))),
    "iq3_xxs": (18, Layout(QK_K, (("d fp16", 2), ("qs 64x8bit grid", 64), ("signs+scales 32x7bit+8x4bit", 32)))),
    "iq1_s": (19, Layout(QK_K, (("d fp16", 2), ("qs 32x8bit grid", 32), ("qh 32x3bit grid+8x(3bit scale+1bit delta)", 16)))),
    "iq4_nl": (20, Layout(QK, (("d fp16", 2), ("qs 32x4bit", 16)))),
    "iq3_s": (21, Layout(QK_K, (("d fp16", 2), ("qs 64x8bit grid", 64), ("qh 64x1bit grid", 8), ("signs 256x1bit", 32), ("scales 8x4bit", 4)))),
    "iq2_s": (22, Layout(QK_K, (("d fp16", 2), ("qs 32x8bit grid", 32), ("signs 256x1bit", 32), ("qh 32x2bit grid", 8), ("scales 16x4bit", 8)))),
    "iq4_xs": (23, Layout(QK_K, (("d fp16", 2), ("scales_h 8x2bit", 2), ("scales_l 8x4bit", 4), ("qs 256x4bit", 128)))),
    "iq1_m": (29, Layout(QK_K, (("qs 32x8bit grid", 32), ("qh 32x(3bit grid+1bit delta)", 16), ("scales 16x3bit+fp16 d", 8)))),
    "bf16": (30, Layout(1, (("value", 2),))),
    "tq1_0": (34, Layout(QK_K, (("qs 240 trits", 48), ("qh 16 trits", 4), ("d fp16", 2)))),
    "tq2_0": (35, Layout(QK_K, (("qs 256x2bit", 64), ("d fp16", 2)))),
    "mxfp4": (39, Layout(QK, (("e e8m0", 1), ("qs 32xe2m1", 16)))),
}


def ggml_type_id(name: str) -> int:
    return GGML_TYPES[name][0]


def ggml_layout(name: str) -> Layout:
    return GGML_TYPES[name][1]
