"""Element-wise floating-point formats: fp16, bf16, the OCP 8/6/4-bit floats and E8M0.

Each format is a :class:`Minifloat` instance with

* ``cast(x, saturate=True)``: round to the nearest representable value (ties to even) and return
  float32. ``saturate=False`` is bit-for-bit ``x.astype(<dtype>).astype(np.float32)`` with the
  ml_dtypes dtype named in ``reference`` (numpy's ``float16`` for fp16): overflow gives Inf
  (fp16, bf16, e5m2, e3m4), NaN (e4m3: no Inf) or the largest value (fp6/fp4: neither).
  ``saturate=True`` clamps out-of-range values (Inf included) to +-max first; NaN stays NaN.
* ``encode_bits`` / ``decode_bits``: the raw codes (uint8, uint16 for fp16/bf16) and back, and
  ``values()``: every finite representable value, for number-line plots.
* ``encode(x, granularity=..., group_size=32)``: a stored tensor. ``"none"`` is the plain cast
  (``saturate=False``); ``"tensor"``, ``"channel"`` (one scale per row: last axis) and ``"group"``
  (``group_size`` consecutive values of a row) first divide by an fp32 scale
  ``absmax / fmt.max`` so that the largest value maps onto the format's max, then cast with
  saturation. Codes are packed to their bit width (fp6: 4 values in 3 bytes, fp4: 2 per byte).
  The default is ``"none"`` for fp16/bf16 and for e8m0 (a scale format: unsigned, no zero, so
  an absmax scale adds nothing; scaled e8m0 encodes reject negative input), ``"tensor"`` else.

Specs: IEEE 754 binary16; bfloat16; OCP 8-bit Floating Point (OFP8) v1.0 for E4M3/E5M2; OCP
Microscaling (MX) v1.0 section 5 for FP6 E2M3/E3M2, FP4 E2M1 and the E8M0 scale; E3M4 as
ml_dtypes' ``float8_e3m4`` (IEEE-like, bias 3). The bit-level rounding is in ``_floatbits.py``.
"""

from __future__ import annotations

from math import gcd
from typing import Any

import numpy as np

from ._floatbits import FloatSpec, pack, unpack
from .base import Encoded, Format, Layout, as_float32, check_blocks, check_finite, register, rows

GRANULARITIES = ("none", "tensor", "channel", "group")


def _float32_input(x: Any) -> np.ndarray:
    """numpy/torch float16/bfloat16/float32 exactly; Python numbers and lists via float32."""
    if isinstance(x, np.ndarray) or type(x).__module__.startswith("torch"):
        return as_float32(x)
    return np.asarray(x, dtype=np.float32)  # a Python float is first rounded to float32


def absmax_scales(amax: np.ndarray, fmt_max: float) -> np.ndarray:
    """fp32 scales ``amax / fmt_max`` mapping each group's absmax onto the format's max.

    All-zero groups get 1. A scale below float32's smallest normal (only bf16 and e8m0, whose
    max is ~2**127, get there: amax < ~5e-7) is raised to ``2**-126`` so that it never
    underflows to 0; ``x / scale`` then stays below the max anyway.
    """
    s = np.maximum(amax / np.float32(fmt_max), np.finfo(np.float32).tiny)
    return np.where(amax > 0, s, np.float32(1)).astype(np.float32)


class Minifloat(Format):
    """A float format with ``exponent_bits``/``mantissa_bits``/``bias`` (see module docstring)."""

    family = "float"

    def __init__(self, name: str, spec: FloatSpec, reference: str, description: str,
                 granularity: str = "tensor") -> None:
        self.name = name
        self.spec = spec
        self.reference = reference  #: the ml_dtypes / numpy dtype this format matches bit for bit
        self.description = description
        self.defaults = {"granularity": granularity, "group_size": 32}

    # -- facts for lessons ------------------------------------------------------------------------
    @property
    def exponent_bits(self) -> int:
        return self.spec.ebits

    @property
    def mantissa_bits(self) -> int:
        return self.spec.mbits

    @property
    def bias(self) -> int:
        return self.spec.bias

    @property
    def bits(self) -> int:
        """Bits per value (sign included)."""
        return self.spec.nbits

    @property
    def max(self) -> float:
        """Largest finite value."""
        return float(self.spec.table()[self.spec.max_code])

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value (E8M0: ``2**-127``, it has no subnormals)."""
        return float(self.spec.table()[0 if self.spec.kind == "e8m0" else 1 << self.spec.mbits])

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value."""
        return float(self.spec.table()[0 if self.spec.kind == "e8m0" else 1])

    def values(self) -> np.ndarray:
        """All finite representable values, ascending (``-0`` and ``+0`` appear once)."""
        t = self.spec.table()
        return np.unique(t[np.isfinite(t)])

    # -- element-wise API -------------------------------------------------------------------------
    def encode_bits(self, x: Any, saturate: bool = True) -> np.ndarray:
        """Codes of ``x`` (uint8, or uint16 for 16-bit formats), same shape."""
        return self.spec.encode(_float32_input(x), saturate)

    def decode_bits(self, codes: Any) -> np.ndarray:
        """float32 values of ``codes``."""
        c = np.asarray(codes)
        if c.dtype.kind not in "ui" or (c.size and (c.min() < 0 or c.max() >= 2**self.bits)):
            raise ValueError(f"{self.name}: codes must be integers in [0, {2**self.bits})")
        return self.spec.decode(c.astype(np.intp))

    def cast(self, x: Any, saturate: bool = True) -> np.ndarray:
        """Round to this format (nearest, ties to even) and back to float32."""
        return self.spec.cast(_float32_input(x), saturate)

    # -- Format contract --------------------------------------------------------------------------
    def _validate(self, opts: dict[str, Any]) -> None:
        if opts["granularity"] not in GRANULARITIES:
            raise ValueError(f"{self.name}: granularity must be one of {GRANULARITIES}, "
                             f"got {opts['granularity']!r}")
        g = opts["group_size"]
        if isinstance(g, bool) or not isinstance(g, int | np.integer) or g <= 0:
            raise ValueError(f"{self.name}: group_size must be a positive integer, got {g!r}")

    def layout(self, **options: Any) -> Layout:
        opts = self.options(**options)
        gran, bits = opts["granularity"], self.bits
        codes = f"codes {self.name}"
        if gran == "group":
            g = int(opts["group_size"])
            k = 8 // gcd(g * bits, 8)  # groups per whole number of bytes
            return Layout(k * g, (("scale fp32", 4 * k), (f"{codes} x{k * g}", k * g * bits // 8)))
        k = 8 // gcd(bits, 8)  # values per whole number of bytes (fp6: 4 values = 3 bytes)
        parts = ((f"{codes} x{k}", k * bits // 8),)
        if gran == "tensor":
            return Layout(k, parts, per_tensor=(("scale fp32", 4),))
        if gran == "channel":
            return Layout(k, parts, per_row=(("scale fp32", 4),))
        return Layout(k, parts)

    def _groups(self, x: np.ndarray, gran: str, group_size: int) -> np.ndarray:
        """``x`` as 2-D (n_scales, values per scale)."""
        if gran == "tensor":
            return x.reshape(1, -1)
        if gran == "channel":  # one scale per row; base.rows cannot reshape zero-length rows
            return rows(x) if x.size else x.reshape(int(np.prod(x.shape[:-1])), 0)
        check_blocks(self.name, x, group_size)
        return x.reshape(-1, group_size)

    def _encode(self, x: np.ndarray, granularity: str, group_size: int) -> Encoded:
        opts = {"granularity": granularity, "group_size": int(group_size)}
        if granularity == "none":
            if self.spec.kind == "e8m0":  # as the scaled path: no silent NaN for what E8M0 lacks
                bad = x <= 0  # negative values and +-0 (NaN input stays NaN: E8M0 has a NaN code)
                if bad.any():
                    first = tuple(int(i) for i in np.argwhere(bad)[0])
                    raise ValueError(
                        f"{self.name}: E8M0 stores only positive values (powers of two 2^-127..2^127, no "
                        f"zero, no sign); {int(bad.sum())} value(s) are <= 0, first at index {first}: "
                        f"{x[first]!r}"
                    )
            codes = self.spec.encode(x, saturate=False)
            scales = np.zeros(0, np.float32)
        else:
            check_finite(self.name, x)
            if self.spec.kind == "e8m0" and (x < 0).any():
                raise ValueError(
                    f"{self.name}: E8M0 stores only positive values (it has no sign); "
                    f"{int((x < 0).sum())} value(s) are < 0"
                )
            groups = self._groups(x, granularity, opts["group_size"])
            amax = np.max(np.abs(groups), axis=1, initial=np.float32(0))
            scales = absmax_scales(amax, self.max)
            codes = self.spec.encode(groups / scales[:, None], saturate=True)
        packed = pack(codes, self.bits)
        return Encoded(self.name, tuple(x.shape), {"codes": packed, "scales": scales},
                       int(packed.nbytes + scales.nbytes), opts)

    def _decode(self, enc: Encoded) -> np.ndarray:
        n = enc.size
        vals = self.spec.decode(unpack(enc.parts["codes"], self.bits, n))
        gran = enc.options["granularity"]
        if gran == "none":
            return vals
        x_shape = np.empty(enc.shape, dtype=np.bool_)  # only for the grouping shape
        groups = self._groups(x_shape, gran, enc.options["group_size"]).shape
        return vals.reshape(groups) * enc.parts["scales"][:, None]


_FORMATS = [
    ("fp16", FloatSpec(5, 10, 15, "ieee"), "float16", "IEEE 754 half precision (1-5-10, Inf/NaN)", "none"),
    ("bf16", FloatSpec(8, 7, 127, "ieee"), "bfloat16", "bfloat16: float32's range with 8 significand bits", "none"),
    ("fp8_e4m3", FloatSpec(4, 3, 7, "fn"), "float8_e4m3fn", "OCP FP8 E4M3 (max 448, NaN, no Inf)", "tensor"),
    ("fp8_e5m2", FloatSpec(5, 2, 15, "ieee"), "float8_e5m2", "OCP FP8 E5M2 (max 57344, Inf/NaN)", "tensor"),
    ("fp8_e3m4", FloatSpec(3, 4, 3, "ieee"), "float8_e3m4", "FP8 E3M4, IEEE-like (max 15.5, Inf/NaN)", "tensor"),
    ("fp6_e2m3", FloatSpec(2, 3, 1, "none"), "float6_e2m3fn", "OCP MX FP6 E2M3 (max 7.5, no Inf/NaN)", "tensor"),
    ("fp6_e3m2", FloatSpec(3, 2, 3, "none"), "float6_e3m2fn", "OCP MX FP6 E3M2 (max 28, no Inf/NaN)", "tensor"),
    ("fp4_e2m1", FloatSpec(2, 1, 1, "none"), "float4_e2m1fn", "OCP MX FP4 E2M1 (values 0..6, no Inf/NaN)", "tensor"),
    ("e8m0", FloatSpec(8, 0, 127, "e8m0"), "float8_e8m0fnu", "OCP MX E8M0 scale: powers of two 2^-127..2^127, 0xFF NaN", "none"),
]

for _name, _spec, _ref, _desc, _gran in _FORMATS:
    register(Minifloat(_name, _spec, _ref, _desc, _gran))

__all__ = ["Minifloat", "GRANULARITIES", "absmax_scales"]
