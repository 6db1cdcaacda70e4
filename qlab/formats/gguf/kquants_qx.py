"""Q3_K and Q6_K: llama.cpp's symmetric K-quants (super-blocks of 256 = 16 sub-blocks of 16).

Byte-exact with ``quantize_row_q3_K_ref`` / ``quantize_row_q6_K_ref`` (ggml/src/ggml-quants.c),
which is what ``llama_model_quantize`` runs when there is no importance matrix. The sequential
scale searches (``make_q3_quants``, ``make_qx_quants``) live in :mod:`._qx_kernels` (numba); the
bit packing below is vectorised numpy. Decoding reproduces ``dequantize_row_q3_K`` /
``dequantize_row_q6_K`` (and gguf-py's ``quants.dequantize``) bit for bit: ``(d * scale) * q``
in float32.

Q3_K block (110 bytes): ``hmask[32]`` (bit ``k`` of byte ``m`` = high bit of value ``32k+m``),
``qs[64]`` (2-bit low parts, four 32-value groups per 128 values share a byte), ``scales[12]``
(16 six-bit scales: low nibbles in bytes 0-7, high 2 bits in bytes 8-11), ``d`` fp16.
Value = ``d * (scale6 - 32) * (q3 - 4)``.

Q6_K block (210 bytes): ``ql[128]`` (low nibbles), ``qh[64]`` (high 2 bits), ``scales[16]``
(int8), ``d`` fp16. Value = ``d * scale * (q6 - 32)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..base import Encoded, check_finite
from ._common import GGMLFormat, fp16_from, register
from ._qx_kernels import kernel_input, q3k_codes, q6k_codes

_SHIFT2 = np.array([0, 2, 4, 6], np.uint8)
_SHIFT1 = np.arange(8, dtype=np.uint8)


class _FiniteGGML(GGMLFormat):
    """GGML format whose scale search needs finite input (NaN/Inf -> ValueError)."""

    def _encode(self, x: np.ndarray, **opts: Any) -> Encoded:
        check_finite(self.name, x)
        return super()._encode(x, **opts)


def pack_2bit_groups(q: np.ndarray) -> np.ndarray:
    """(n, 256) values 0..3 -> (n, 64): byte ``32h + l`` holds values ``128h + 32t + l`` at bits ``2t``."""
    g = q.reshape(-1, 2, 4, 32) << _SHIFT2[None, None, :, None]
    return np.bitwise_or.reduce(g, axis=2).reshape(-1, 64)


def unpack_2bit_groups(b: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_2bit_groups`."""
    return ((b.reshape(-1, 2, 1, 32) >> _SHIFT2[None, None, :, None]) & 3).reshape(-1, 256)


class Q3_K(_FiniteGGML):
    name = "q3_k"
    description = "llama.cpp 3-bit K-quant: 16x16 sub-blocks with 6-bit scales and an fp16 super-scale"

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        L, sc6, dbits = q3k_codes(kernel_input(blocks))
        n = L.shape[0]
        out = np.empty((n, self.type_size), np.uint8)
        # hmask: the high bit of each 3-bit code; the first 32 values go to bit 0, the next to bit 1...
        hi = (L >> 2).reshape(n, 8, 32) << _SHIFT1[None, :, None]
        out[:, 0:32] = np.bitwise_or.reduce(hi, axis=1)
        out[:, 32:96] = pack_2bit_groups(L & 3)
        # 16 six-bit scales: low nibbles j and j+8 share byte j, high 2 bits of j at byte 8 + j%4
        out[:, 96:104] = (sc6[:, :8] & 0xF) | ((sc6[:, 8:] & 0xF) << 4)
        h = (sc6 >> 4).reshape(n, 4, 4) << _SHIFT2[None, :, None]
        out[:, 104:108] = np.bitwise_or.reduce(h, axis=1)
        out[:, 108:110] = dbits.view(np.uint8).reshape(n, 2)
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        d = fp16_from(raw[:, 108:110])
        s = raw[:, 96:108]
        lo = np.concatenate([s[:, :8] & 0xF, s[:, :8] >> 4], axis=1)
        hi = (s[:, None, 8:12] >> _SHIFT2[None, :, None]).reshape(n, 16) & 3
        scale = ((lo | (hi << 4)).astype(np.int8) - np.int8(32)).astype(np.float32)
        dl = d * scale  # (n, 16), float32 product first as in C
        high = (raw[:, None, 0:32] >> _SHIFT1[None, :, None]) & 1  # (n, 8, 32)
        offset = ((high.reshape(n, 256) ^ 1) << 2).astype(np.int8)  # 4 where the high bit is clear
        q = unpack_2bit_groups(raw[:, 32:96]).astype(np.int8) - offset
        return (dl[:, :, None] * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, 256)


class Q6_K(_FiniteGGML):
    name = "q6_k"
    description = "llama.cpp 6-bit K-quant: 16x16 sub-blocks with int8 scales and an fp16 super-scale"

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        L, sc, dbits = q6k_codes(kernel_input(blocks))
        n = L.shape[0]
        out = np.empty((n, self.type_size), np.uint8)
        g = L.reshape(n, 2, 4, 32)
        lo = g & 0xF
        # per 128 values: ql[l] = v[l] | v[l+64] << 4, ql[l+32] = v[l+32] | v[l+96] << 4
        out[:, 0:128] = (lo[:, :, 0:2] | (lo[:, :, 2:4] << 4)).reshape(n, 128)
        out[:, 128:192] = pack_2bit_groups(L >> 4)
        out[:, 192:208] = sc.view(np.uint8)
        out[:, 208:210] = dbits.view(np.uint8).reshape(n, 2)
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        n = raw.shape[0]
        d = fp16_from(raw[:, 208:210])
        dl = d * raw[:, 192:208].view(np.int8).astype(np.float32)  # (n, 16)
        ql = raw[:, 0:128].reshape(n, 2, 1, 64)
        lo = (ql >> np.array([0, 4], np.uint8)[None, None, :, None]) & 0xF  # (n, 2, 2, 64)
        q = (lo.reshape(n, 256) | (unpack_2bit_groups(raw[:, 128:192]) << 4)).astype(np.int8) - np.int8(32)
        return (dl[:, :, None] * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, 256)


register(Q3_K())
register(Q6_K())
