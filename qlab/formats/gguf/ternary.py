"""GGML's ternary formats TQ1_0 and TQ2_0 (BitNet b1.58 / TriLM weights, values ``{-1, 0, 1} * d``).

Byte-exact with llama.cpp's ``quantize_row_tq1_0_ref`` / ``quantize_row_tq2_0_ref`` and
``dequantize_row_tq1_0`` / ``dequantize_row_tq2_0`` (``ggml/src/ggml-quants.c``).

Both use blocks of 256 with one fp16 scale ``d = amax`` (the block's largest magnitude) and the
trit ``lroundf(x * id)`` with ``id = 1.0f/d`` in float32. Since ``|x*id| <= 1`` (up to rounding)
the trit is ``-1`` for ``x*id <= -0.5``, ``+1`` for ``x*id >= 0.5`` (half away from zero) and 0
otherwise; it is stored as ``trit + 1`` in {0, 1, 2}. If ``1.0f/d`` overflows (``d`` < ~2.9e-39),
every ``x*id`` is +-inf/NaN, for which x86 ``lroundf`` returns LONG_MIN: ``LONG_MIN + 1`` truncated
to ``int`` is 1, i.e. trit 0 -- exactly what ``id = 0`` gives, so that is what we use.

TQ2_0 (66 bytes / 256 = 2.0625 bpw): ``qs[64]`` then ``d``. Each 128-value half is 32 bytes;
byte ``m`` holds values ``m, m+32, m+64, m+96`` of the half in bits 0-1, 2-3, 4-5, 6-7.

TQ1_0 (54 bytes / 256 = 1.6875 bpw): ``qs[48]``, ``qh[4]``, ``d``. Five trits per byte as a
base-3 number, first trit most significant, stored as ``ceil(q * 256 / 243)`` -- a fixed-point
fraction ``q/243`` in [0, 1) scaled to 256, so that the decoder extracts trit ``k`` with a uint8
multiply by ``3^k`` (which drops the leading trits by overflow) and ``(q * 3) >> 8``:

* ``qs[0:32]``: byte ``m`` holds values ``m + 32k`` (k = 0..4), values 0-159;
* ``qs[32:48]``: byte ``m`` holds values ``160 + m + 16k``, values 160-239;
* ``qh[0:4]``: byte ``j`` holds values ``240 + j + 4k`` (k = 0..3), shifted one trit up (x3).
"""

from __future__ import annotations

import numpy as np

from .common import get_fp16, pack_2bit, put_fp16, register, unpack_2bit
from .legacy import ChunkedGGML, absmax, reciprocal

__all__ = ["TQ1_0", "TQ2_0"]

_F32 = np.float32
_U8 = np.uint8


def _trits(x: np.ndarray, out: np.ndarray, d_byte: int) -> np.ndarray:
    """Blocks ``(n, 256)`` -> stored trits ``(n, 256)`` in {0, 1, 2}; writes ``d`` into ``out``."""
    d = absmax(x, axis=1)
    inv, _ = reciprocal(d)  # overflowed 1/d -> 0: every trit 0, as the x86 reference gives
    v = x * inv[:, None]
    t = np.greater(v, _F32(-0.5)).view(_U8)  # 0 for v <= -0.5
    t += np.greater_equal(v, _F32(0.5)).view(_U8)  # 2 for v >= 0.5
    put_fp16(out, d_byte, d)
    return t


class TQ2_0(ChunkedGGML):
    name = "tq2_0"
    description = "Ternary {-1, 0, 1} blocks of 256 as 2-bit codes with one fp16 scale (llama.cpp TQ2_0)"
    transposed = False  # 256-long rows reduce efficiently as they are

    def _quantize_chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        out[:, :64] = pack_2bit(_trits(x, out, 64))

    def _dequantize_chunk(self, raw: np.ndarray, out: np.ndarray) -> None:
        c = unpack_2bit(raw[:, :64])
        c -= _U8(1)  # wraps: the int8 view is the trit
        np.multiply(c.view(np.int8), get_fp16(raw, 64), out=out, dtype=_F32)


# ceil(q * 256 / 243) for every base-3 byte value q <= 242 (the reference's ceiling division)
_CEIL = ((np.arange(243) * 256 + 242) // 243).astype(_U8)
_POW3 = (1, 3, 9, 27, 81)


def _base3(t: np.ndarray) -> np.ndarray:
    """Horner's rule over axis 1, first trit most significant: ``((t0*3 + t1)*3 + ...)``; <= 242."""
    q = t[:, 0].copy()
    for k in range(1, t.shape[1]):
        q *= _U8(3)
        q += t[:, k]
    return q


class TQ1_0(ChunkedGGML):
    name = "tq1_0"
    description = (
        "Ternary {-1, 0, 1} blocks of 256, five trits per byte, with one fp16 scale (llama.cpp TQ1_0)"
    )
    transposed = False

    def _quantize_chunk(self, x: np.ndarray, out: np.ndarray) -> None:
        t = _trits(x, out, 52)
        q = np.empty((x.shape[0], 52), _U8)
        q[:, :32] = _base3(t[:, :160].reshape(-1, 5, 32))
        q[:, 32:48] = _base3(t[:, 160:240].reshape(-1, 5, 16))
        q[:, 48:52] = _base3(t[:, 240:].reshape(-1, 4, 4)) * _U8(3)  # 4 trits, moved up one place
        out[:, :52] = _CEIL[q]

    def _dequantize_chunk(self, raw: np.ndarray, out: np.ndarray) -> None:
        qs = raw[:, :52]
        c = np.empty((raw.shape[0], 256), np.int8)
        a, b, h = (
            c[:, :160].reshape(-1, 5, 32),
            c[:, 160:240].reshape(-1, 5, 16),
            c[:, 240:].reshape(-1, 4, 4),
        )
        for k, p in enumerate(_POW3):
            # (q * 3^k) mod 256 brings trit k to the top; floor(3 * q / 256) reads it: that is
            # 0 below 86, 1 from 86, 2 from 171. Minus 1 gives the trit.
            q = qs * _U8(p)
            trit = (q >= _U8(171)).view(np.int8) - (q < _U8(86)).view(np.int8)
            a[:, k] = trit[:, :32]
            b[:, k] = trit[:, 32:48]
            if k < 4:
                h[:, k] = trit[:, 48:52]
        np.multiply(c, get_fp16(raw, 52), out=out, dtype=_F32)


for _cls in (TQ1_0, TQ2_0):
    register(_cls())
