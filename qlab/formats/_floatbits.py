"""Bit-level float32 <-> small-float conversion, written with numpy integer operations.

This is the engine behind :mod:`qlab.formats.minifloat` and :mod:`qlab.formats.microscaling`.
It reproduces ``ml_dtypes``' non-saturating casts bit for bit (``x.astype(ml_dtypes.float8_e4m3fn)``
and friends; numpy's ``float16``), which the tests use as the reference. Nothing here calls
ml_dtypes: the rounding is done on the float32 bit pattern.

How a float32 ``x`` becomes a code (``FloatSpec.encode``):

* **Normal targets.** The float32 exponent and mantissa fields already sit in the right order, so
  rounding the 32-bit pattern to ``m`` mantissa bits is one integer add and a shift: add
  ``2**(shift-1) - 1`` plus the lowest kept bit (round half to even), then shift right by
  ``shift = 23 - m``. A carry out of the mantissa bumps the exponent, which is exactly right.
  Re-biasing is a subtraction of ``(127 - bias) << m``.
* **Subnormal targets** (``x`` below the smallest normal of the target): the significand (with
  its implicit 1, or without it for float32 subnormals) is shifted right by a per-element amount,
  with the same round-half-even bias. Code ``2**m`` (exponent field 1) comes out naturally when a
  value rounds up to the smallest normal.
* **Overflow** (rounded code above the largest finite one) follows ml_dtypes: IEEE-like formats
  (``fp16``, ``bf16``, ``e5m2``, ``e3m4``) give infinity, ``e4m3fn`` gives NaN (it has no
  infinity), and the "no NaN, no Inf" formats (``fp6``/``fp4``) give their largest value.
  ``saturate=True`` clamps to the largest finite value instead (same as ``np.clip`` first).
* **NaN**: quiet NaN with the input's sign. ml_dtypes quirk for formats without NaN (fp6, fp4):
  a NaN becomes a zero whose sign bit is the *opposite* of the NaN's (their ``quiet_NaN()`` is
  the ``-0`` pattern and the sign is applied by negation); we reproduce it.
* **E8M0** (OCP MX scale: 8 exponent bits, no sign, no mantissa, bias 127, 0xFF = NaN) follows
  ml_dtypes' ``float8_e8m0fnu``: the implicit leading 1 is the kept "mantissa" bit, so round half
  to even means *ties round up* (``1.5 * 2**e -> 2**(e+1)``). float32 subnormals (below
  ``2**-126``) follow the same rule on ``m * 2**-127``: ``m >= 1.5`` -> code 1 (``2**-126``),
  else code 0 (``2**-127``), so ``8.4e-39 = 1.43 * 2**-127`` gives ``2**-127`` (ml_dtypes 0.7; its
  0.5 releases rounded these in units of ``2**-126`` instead).
  Zero and negative inputs have no code: NaN, or code 0 (``2**-127``) when saturating.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Kind = Literal["ieee", "fn", "none", "e8m0"]
_CHUNK = 1 << 16


@dataclass(frozen=True)
class FloatSpec:
    """A binary float format: ``ebits`` exponent bits, ``mbits`` mantissa bits, ``bias``.

    ``kind`` names the special-value convention: ``"ieee"`` (top exponent = Inf/NaN),
    ``"fn"`` (finite + NaN only at all-ones, as OCP E4M3), ``"none"`` (every code is a finite
    number, as OCP FP6/FP4) or ``"e8m0"`` (unsigned powers of two, 0xFF = NaN).
    """

    ebits: int
    mbits: int
    bias: int
    kind: Kind
    _table: dict = field(default_factory=dict, compare=False, repr=False)

    # -- derived constants ----------------------------------------------------------------------
    @property
    def signed(self) -> bool:
        return self.kind != "e8m0"

    @property
    def nbits(self) -> int:
        return self.ebits + self.mbits + int(self.signed)

    @property
    def sign_mask(self) -> int:
        return 1 << (self.ebits + self.mbits) if self.signed else 0

    @property
    def max_code(self) -> int:
        """Code (magnitude bits) of the largest finite value."""
        e, m = self.ebits, self.mbits
        if self.kind == "ieee":
            return ((2**e - 2) << m) | (2**m - 1)
        if self.kind == "fn":
            return ((2**e - 1) << m) | (2**m - 2)
        if self.kind == "none":
            return 2 ** (e + m) - 1
        return 0xFE

    @property
    def overflow_code(self) -> int:
        """What a non-saturating cast stores on overflow (ml_dtypes' ``infinity()``)."""
        if self.kind == "ieee":
            return (2**self.ebits - 1) << self.mbits  # Inf
        if self.kind == "fn":
            return 2 ** (self.ebits + self.mbits) - 1  # NaN (no Inf in e4m3fn)
        if self.kind == "none":
            return self.max_code  # fp6/fp4: infinity() is the largest value
        return 0xFF

    # -- float32 -> code ------------------------------------------------------------------------
    def encode(self, x: np.ndarray, saturate: bool = False) -> np.ndarray:
        """Round float32 ``x`` to the nearest code (ties to even); uint8 or uint16 codes, same shape.

        The work is a dozen whole-array integer passes on uint32 temporaries; it runs over
        fixed 64K-value chunks so that the temporaries stay in the CPU cache (about 3x faster
        on a 16M-value tensor than one pass over everything). The chunks are independent.
        """
        x = np.asarray(x, dtype=np.float32, order="C")  # (ascontiguousarray turns 0-d into 1-d)
        flat = x.reshape(-1)
        out = np.empty(flat.size, np.uint8 if self.nbits <= 8 else np.uint16)
        for i in range(0, flat.size, _CHUNK):
            out[i : i + _CHUNK] = self._encode_flat(flat[i : i + _CHUNK], saturate)
        return out.reshape(x.shape)

    def _encode_flat(self, x: np.ndarray, saturate: bool) -> np.ndarray:
        bits = x.view(np.uint32)
        mag = bits & np.uint32(0x7FFFFFFF)
        if self.kind == "e8m0":
            code = self._encode_e8m0(bits, mag, saturate)
        else:
            code = self._round_magnitude(mag)
            # overflow (+-Inf lands here too: its rounded code is far above max_code)
            np.copyto(code, np.uint32(self.max_code if saturate else self.overflow_code),
                      where=code > self.max_code)
            sign = (bits >> np.uint32(31)) * np.uint32(self.sign_mask)
            code |= sign
            nan = mag > np.uint32(0x7F800000)
            if nan.any():
                if self.kind == "ieee":  # quiet NaN: all-ones exponent, top mantissa bit
                    qnan = ((2**self.ebits - 1) << self.mbits) | (1 << (self.mbits - 1))
                    np.copyto(code, sign | np.uint32(qnan), where=nan)
                elif self.kind == "fn":
                    np.copyto(code, sign | np.uint32(self.overflow_code), where=nan)
                else:  # no NaN code: ml_dtypes returns -(quiet_NaN()), a zero of opposite sign
                    np.copyto(code, sign ^ np.uint32(self.sign_mask), where=nan)
        return code

    def _round_magnitude(self, mag: np.ndarray) -> np.ndarray:
        """Round-half-even of ``|x|`` (float32 bits, uint32) to a code without sign."""
        m = self.mbits
        shift = np.uint32(23 - m)
        # Normal target: round the float32 pattern itself (mag + 2**(shift-1) - 1 + lsb fits
        # in uint32 even for NaN patterns), then re-bias the exponent. Values in the subnormal
        # zone wrap around here and are overwritten below.
        code = mag >> shift
        code &= np.uint32(1)
        code += mag
        code += np.uint32((1 << (23 - m - 1)) - 1)
        code >>= shift
        code -= np.uint32((127 - self.bias) << m)
        # Subnormal target (|x| < smallest normal 2**(1-bias)): adding C = 2**(24-bias-m) in
        # float32 makes the FPU round |x| to a multiple of the smallest subnormal
        # 2**(1-bias-m) (round half to even, exact IEEE addition); the code is then the
        # difference of the bit patterns. (Assumes denormals are not flushed: numpy's default.)
        min_normal_bits = np.uint32((128 - self.bias) << 23)
        sub = mag < min_normal_bits
        c = np.float32(2.0 ** (24 - self.bias - m))
        with np.errstate(invalid="ignore"):  # signalling-NaN patterns; they are handled later
            rounded = mag.view(np.float32) + c
        rounded_bits = rounded.view(np.uint32)
        rounded_bits -= c.view(np.uint32)
        return np.where(sub, rounded_bits, code)  # (a masked copyto mispredicts on mixed masks)

    @staticmethod
    def _encode_e8m0(bits: np.ndarray, mag: np.ndarray, saturate: bool) -> np.ndarray:
        exp32 = mag >> np.uint32(23)
        frac = mag & np.uint32(0x7FFFFF)
        # float32 normals: the implicit 1 is the kept bit, so "half to even" = ties up.
        code = exp32 + (frac >= 0x400000)
        # float32 subnormals: value = (frac / 2**22) * 2**-127, the same ties-up rule on that
        # "mantissa": frac >= 1.5 * 2**22 gives code 1 (2**-126), else code 0 (2**-127)
        np.copyto(code, (frac >= 0x600000).astype(np.uint32), where=exp32 == 0)
        np.copyto(code, np.uint32(0xFE if saturate else 0xFF), where=code > 0xFE)  # overflow, +Inf
        no_code = (bits >> np.uint32(31)).astype(bool) | (mag == 0)  # no zero, no sign
        np.copyto(code, np.uint32(0x00 if saturate else 0xFF), where=no_code)
        np.copyto(code, np.uint32(0xFF), where=mag > np.uint32(0x7F800000))  # NaN stays NaN
        return code

    # -- code -> float32 ------------------------------------------------------------------------
    def table(self) -> np.ndarray:
        """float32 value of every code (index = code), NaN/Inf included."""
        if "t" not in self._table:
            c = np.arange(2**self.nbits, dtype=np.int64)
            m = self.mbits
            if self.kind == "e8m0":
                v = np.ldexp(1.0, c - 127)
                v[c == 0xFF] = np.nan
            else:
                e_field = (c >> m) & (2**self.ebits - 1)
                frac = c & (2**m - 1)
                mag = np.where(
                    e_field == 0,
                    np.ldexp(frac.astype(np.float64), 1 - self.bias - m),
                    np.ldexp((frac + 2**m).astype(np.float64), e_field - self.bias - m),
                )
                top = e_field == 2**self.ebits - 1
                if self.kind == "ieee":
                    mag = np.where(top, np.where(frac == 0, np.inf, np.nan), mag)
                elif self.kind == "fn":
                    mag = np.where(top & (frac == 2**m - 1), np.nan, mag)
                v = np.where(c & self.sign_mask, -mag, mag)
            self._table["t"] = v.astype(np.float32)  # exact: every value fits float32
        return self._table["t"]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.table()[np.asarray(codes)]

    def cast(self, x: np.ndarray, saturate: bool = True) -> np.ndarray:
        return self.decode(self.encode(x, saturate))


# -- packing codes to their bit width ----------------------------------------------------------
def pack(codes: np.ndarray, nbits: int) -> np.ndarray:
    """Flat codes -> bytes, ``nbits`` per value, little-endian bit order (value 0 in the low bits).

    4-bit: two per byte, first value in the low nibble (the torchao / PTX ``e2m1x2`` order).
    6-bit: four values a, b, c, d in three bytes ``a | b<<6``, ``b>>2 | c<<4``, ``c>>4 | d<<2``.
    8/16-bit: the codes themselves. The last byte is zero-padded.
    """
    c = np.ascontiguousarray(codes).reshape(-1)
    if nbits in (8, 16):
        return c.astype(np.uint8 if nbits == 8 else np.uint16)
    n = c.size
    per = 2 if nbits == 4 else 4
    c = c.astype(np.uint8)
    if n % per:
        c = np.concatenate([c, np.zeros(per - n % per, np.uint8)])
    v = c.reshape(-1, per)
    if nbits == 4:
        out = v[:, 0] | (v[:, 1] << np.uint8(4))
    else:
        out = np.empty((v.shape[0], 3), np.uint8)
        out[:, 0] = v[:, 0] | (v[:, 1] << np.uint8(6))
        out[:, 1] = (v[:, 1] >> np.uint8(2)) | (v[:, 2] << np.uint8(4))
        out[:, 2] = (v[:, 2] >> np.uint8(4)) | (v[:, 3] << np.uint8(2))
    return out.reshape(-1)[: (n * nbits + 7) // 8]


def unpack(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack`: the first ``count`` codes."""
    p = np.ascontiguousarray(packed).reshape(-1)
    if nbits in (8, 16):
        return p[:count]
    step = 1 if nbits == 4 else 3
    if p.size % step:
        p = np.concatenate([p, np.zeros(step - p.size % step, np.uint8)])
    b = p.reshape(-1, step)
    if nbits == 4:
        out = np.empty((b.shape[0], 2), np.uint8)
        out[:, 0] = b[:, 0] & np.uint8(0x0F)
        out[:, 1] = b[:, 0] >> np.uint8(4)
    else:
        m = np.uint8(0x3F)
        out = np.empty((b.shape[0], 4), np.uint8)
        out[:, 0] = b[:, 0] & m
        out[:, 1] = ((b[:, 0] >> np.uint8(6)) | (b[:, 1] << np.uint8(2))) & m
        out[:, 2] = ((b[:, 1] >> np.uint8(4)) | (b[:, 2] << np.uint8(4))) & m
        out[:, 3] = b[:, 2] >> np.uint8(2)
    return out.reshape(-1)[:count]


__all__ = ["FloatSpec", "pack", "unpack"]
