"""Microscaling block formats: OCP MX v1.0 (MXFP8/6/4, MXINT8) and NVIDIA's NVFP4.

OCP Microscaling Formats (MX) Specification v1.0, section 6.3 (conversion from FP32): a block
of k = 32 values along the row shares one E8M0 scale

    X = 2 ** (floor(log2(max_i |V_i|)) - emax_elem)

(``emax_elem`` = exponent of the element type's largest normal: E4M3 8, E5M2 15, E2M3 2, E3M2 4,
E2M1 2, INT8 0), and each element is ``P_i = quantize(V_i / X)`` with normal values clamped to
the element's max. We round elements to nearest, ties to even (the element types' own
conversion, as in ml_dtypes / torch float8 casts). Corner cases follow Microsoft's
``microxcaling`` reference (``mx/mx_ops.py::_quantize_mx``): an all-zero block uses
``log2(FP32_MIN_NORMAL) = -126``, and the scale exponent is clamped to [-127, 127] (finite inputs
never reach the NaN scale 0xFF). ``floor(log2(.))`` is taken exactly from the float32 exponent.
MXINT8 elements are 8-bit two's complement with an implicit ``2**-6`` (1 sign, 1 integer and 6
fraction bits), clamped symmetrically to +-127/64 as in microxcaling's ``max_norm``.

``mxfp4`` is stored in GGML's ``block_mxfp4`` layout and reproduces llama.cpp's bytes (see
:class:`MXFP4`). ``nvfp4`` follows torchao's two-level recipe (see :class:`NVFP4`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._floatbits import FloatSpec, pack, unpack
from .base import Encoded, Format, Layout, check_blocks, check_finite, register
from .gguf.common import GGMLFormat

E4M3 = FloatSpec(4, 3, 7, "fn")
E2M1 = FloatSpec(2, 1, 1, "none")
MX_BLOCK = 32


def _pow2(e: np.ndarray) -> np.ndarray:
    """``2.0**e`` as float32 for integer ``e`` in [-149, 127], built from bits (exact)."""
    e = np.asarray(e, dtype=np.int32)
    normal = (np.clip(e + 127, 1, 254).astype(np.uint32) << np.uint32(23)).view(np.float32)
    sub = (np.uint32(1) << np.clip(e + 149, 0, 22).astype(np.uint32)).view(np.float32)
    return np.where(e >= -126, normal, sub)


class MXFormat(Format):
    """An OCP MX format: 32 elements + one E8M0 scale per block (``elem=None``: MXINT8)."""

    family = "microscaling"
    defaults: dict[str, Any] = {}

    def __init__(self, name: str, elem: FloatSpec | None, elem_name: str, emax: int, description: str):
        self.name, self.elem, self.elem_name, self.emax = name, elem, elem_name, emax
        self.description = description
        self.elem_bits = elem.nbits if elem is not None else 8

    def layout(self, **options: Any) -> Layout:
        self.options(**options)
        n = MX_BLOCK * self.elem_bits // 8
        return Layout(MX_BLOCK, (("scale e8m0", 1), (f"elements {MX_BLOCK}x{self.elem_name}", n)))

    def _encode(self, x: np.ndarray, **opts: Any) -> Encoded:
        check_blocks(self.name, x, MX_BLOCK)
        check_finite(self.name, x)
        blocks = x.reshape(-1, MX_BLOCK)
        amax = np.max(np.abs(blocks), axis=1, initial=np.float32(0))
        _, e = np.frexp(amax)  # amax = f * 2**e, f in [0.5, 1): floor(log2 amax) = e - 1 exactly
        shared = np.clip(np.where(amax > 0, e - 1, -126) - self.emax, -127, 127)
        # V / X as a multiplication by the exact power of two 2**-shared (correctly rounded,
        # so identical to the division; only values far below the element's resolution can
        # round in float32's subnormal range).
        scaled = blocks * _pow2(-shared)[:, None]
        if self.elem is None:  # MXINT8: round(V / X * 64), symmetric clamp to +-127
            q = np.clip(np.rint(scaled * np.float32(64)), -127, 127).astype(np.int8)
            codes = q.view(np.uint8)
        else:
            codes = self.elem.encode(scaled, saturate=True)
        packed = pack(codes, self.elem_bits)
        scales = (shared + 127).astype(np.uint8)
        return Encoded(self.name, tuple(x.shape), {"scales": scales, "codes": packed},
                       int(scales.nbytes + packed.nbytes), {})

    def _decode(self, enc: Encoded) -> np.ndarray:
        scales = enc.parts["scales"]
        codes = unpack(enc.parts["codes"], self.elem_bits, enc.size).reshape(-1, MX_BLOCK)
        if self.elem is None:
            vals = codes.view(np.int8).astype(np.float32) * np.float32(2.0**-6)
        else:
            vals = self.elem.decode(codes)
        # X * P_i is exact (the products are representable); scale 0xFF is NaN (spec 5.4)
        x = vals * _pow2(scales.astype(np.int32) - 127)[:, None]
        return np.where((scales == 0xFF)[:, None], np.float32(np.nan), x)


class MXFP4(GGMLFormat):
    """MXFP4 in GGML's ``block_mxfp4`` layout, byte-identical to llama.cpp.

    ``quantize_row_mxfp4_ref`` (ggml-quants.c): ``e = (uint8_t)(floorf(log2f(amax)) - 2 + 127)``
    is the OCP shared exponent (E2M1 emax = 2) and ``d = GGML_E8M0_TO_FP32_HALF(e)`` is half the
    OCP scale, because GGML's table ``kvalues_mxfp4 = {0,1,2,3,4,6,8,12, 0,-1,...,-12}`` holds
    doubled E2M1 values; the table index *is* the E2M1 code (bit 3 = sign). The nibble order is
    GGML's: byte j holds element j (low nibble) and element j + 16 (high nibble).

    Where GGML's bytes differ from the OCP spec's recipe (the GGML bytes win here):

    * Element rounding: ``best_index_mxfp4`` scans the 16 table entries for the smallest
      ``fabsf(kvalues[i]*d - x)`` and keeps the first on ties (strict ``<``), so ties go to the
      *smaller magnitude* (x/X = 0.75 -> 0.5, 1.75 -> 1.5, 3.5 -> 3), not to even as the E2M1 cast
      would (0.75 -> 1, 1.75 -> 2, 3.5 -> 4); -0 is never produced. The float32 differences to
      the two neighbours of x are exact (Sterbenz: neighbours are within a factor 2), so
      counting the midpoints ``< |x|`` reproduces the scan.
    * ``floorf(log2f(amax))``: log2f of a value just below a power of two rounds up to the
      integer, so such a block gets the next exponent (e.g. amax = 2 - 2**-23 -> e from 1.0).
      We reproduce a correctly rounded log2f (float64 log2 rounded to float32; glibc's log2f
      evaluates in double and rounds once).
    * amax < 2**-125: the exponent expression is negative and the C cast to uint8_t is
      undefined; x86 wraps it modulo 256 (as numpy's cast does in gguf-py) and we do the same.
      The block then decodes to zeros. An all-zero block gets e = 0.
    * Decoding ignores E8M0's NaN: e = 0xFF decodes as 2**127 (``GGML_E8M0_TO_FP32_HALF``).
    """

    name = "mxfp4"
    family = "microscaling"
    description = "OCP MXFP4 (32 E2M1 + E8M0 scale) in GGML's block_mxfp4 layout"
    # doubled E2M1 values (GGML kvalues_mxfp4) and the midpoints between neighbours
    KVALUES = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float32)
    MIDPOINTS = np.array([0.5, 1.5, 2.5, 3.5, 5, 7, 10], np.float32)


    @staticmethod
    def e8m0_to_fp32_half(e: np.ndarray) -> np.ndarray:
        """``GGML_E8M0_TO_FP32_HALF``: 2**(e-128), built from bits (subnormal for e < 2)."""
        e = e.astype(np.uint32)
        bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - np.uint32(1)) << np.uint32(23))
        return bits.astype(np.uint32).view(np.float32)

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        amax = np.max(np.abs(blocks), axis=1, initial=np.float32(0))
        with np.errstate(divide="ignore"):
            log2f = np.log2(amax.astype(np.float64)).astype(np.float32)  # correctly rounded
        e = np.where(amax > 0, np.floor(log2f) - 2 + 127, 0).astype(np.int64) & 0xFF  # x86 wrap
        d = self.e8m0_to_fp32_half(e)
        mag = np.abs(blocks)
        k = np.zeros(blocks.shape, np.uint8)
        with np.errstate(over="ignore"):  # d = 2**127 (wrapped e): 10*d is Inf, harmless
            for mid in self.MIDPOINTS:  # 7 fixed thresholds; mid*d is exact (power-of-two d)
                k += mag > (mid * d)[:, None]
        idx = k | np.where((blocks < 0) & (k > 0), np.uint8(8), np.uint8(0))
        qs = idx[:, :16] | (idx[:, 16:] << np.uint8(4))
        return np.concatenate([e.astype(np.uint8)[:, None], qs], axis=1)

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        d = self.e8m0_to_fp32_half(raw[:, 0])
        qs = raw[:, 1:]
        idx = np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)
        with np.errstate(over="ignore"):  # e = 0xFF times 12 overflows to Inf, as in C
            return self.KVALUES[idx] * d[:, None]


class NVFP4(Format):
    """NVIDIA NVFP4: blocks of 16 E2M1 values, an FP8 E4M3 scale per block, an FP32 tensor scale.

    Recipe of torchao's ``_nvfp4_quantize`` with a per-tensor scale
    (``torchao/prototype/mx_formats/nvfp4_tensor.py``), all in float32:

    * ``tensor_scale = amax(|x|) / (448 * 6)`` (``per_tensor_amax_to_scale``)
    * ``s = clamp((block_amax / 6) / tensor_scale, 2**-6, 448)`` cast to E4M3 (round to nearest
      even); the lower clamp is torchao's ``E4M3_EPS = finfo(float8_e4m3fn).tiny``
    * ``total = tensor_scale * float(s)``; elements ``E2M1(clamp(x / total, -6, 6))``
    * decode: ``E2M1 value * (tensor_scale * float(s))``.

    (TransformerEngine instead multiplies by reciprocal encode scales, which can round
    differently in the last bit.) When ``tensor_scale`` is 0 (all-zero tensor, or ``amax``
    so tiny that ``amax / 2688`` underflows) every element is encoded as 0, where torchao
    would divide by zero. Codes are packed two per byte, first value in the low nibble.
    """

    name = "nvfp4"
    family = "microscaling"
    description = "NVIDIA NVFP4: 16 E2M1 + FP8 E4M3 block scale, FP32 tensor scale"
    defaults: dict[str, Any] = {}
    BLOCK = 16

    def layout(self, **options: Any) -> Layout:
        self.options(**options)
        return Layout(self.BLOCK, (("scale e4m3", 1), ("elements 16xe2m1", 8)),
                      per_tensor=(("tensor_scale fp32", 4),))

    def _encode(self, x: np.ndarray, **opts: Any) -> Encoded:
        check_blocks(self.name, x, self.BLOCK)
        check_finite(self.name, x)
        blocks = x.reshape(-1, self.BLOCK)
        tensor_scale = np.float32(np.max(np.abs(x), initial=np.float32(0)) / np.float32(448 * 6))
        block_amax = np.max(np.abs(blocks), axis=1, initial=np.float32(0))
        if tensor_scale > 0:
            rel = (block_amax / np.float32(6)) / tensor_scale
        else:
            rel = np.zeros_like(block_amax)
        scales = E4M3.encode(np.clip(rel, np.float32(2.0**-6), np.float32(448)), saturate=True)
        total = tensor_scale * E4M3.decode(scales)
        if tensor_scale > 0:
            data = blocks / total[:, None]
        else:
            data = np.zeros_like(blocks)
        codes = E2M1.encode(data, saturate=True)  # saturate = clamp to +-6 first
        packed = pack(codes, 4)
        ts = np.array([tensor_scale], np.float32)
        return Encoded(self.name, tuple(x.shape), {"tensor_scale": ts, "scales": scales, "codes": packed},
                       int(ts.nbytes + scales.nbytes + packed.nbytes), {})

    def _decode(self, enc: Encoded) -> np.ndarray:
        total = enc.parts["tensor_scale"][0] * E4M3.decode(enc.parts["scales"])
        vals = E2M1.decode(unpack(enc.parts["codes"], 4, enc.size)).reshape(-1, self.BLOCK)
        return vals * total[:, None]


_MX = [
    ("mxfp8_e4m3", E4M3, "e4m3", 8, "OCP MXFP8: 32 FP8 E4M3 elements + E8M0 scale"),
    ("mxfp8_e5m2", FloatSpec(5, 2, 15, "ieee"), "e5m2", 15, "OCP MXFP8: 32 FP8 E5M2 elements + E8M0 scale"),
    ("mxfp6_e2m3", FloatSpec(2, 3, 1, "none"), "e2m3", 2, "OCP MXFP6: 32 FP6 E2M3 elements + E8M0 scale"),
    ("mxfp6_e3m2", FloatSpec(3, 2, 3, "none"), "e3m2", 4, "OCP MXFP6: 32 FP6 E3M2 elements + E8M0 scale"),
]
for _name, _elem, _ename, _emax, _desc in _MX:
    register(MXFormat(_name, _elem, _ename, _emax, _desc))
register(MXFP4())
register(MXFormat("mxint8", None, "int8", 0, "OCP MXINT8: 32 int8 (scaled by 2^-6) + E8M0 scale"))
register(NVFP4())

__all__ = ["MXFormat", "MXFP4", "NVFP4"]
