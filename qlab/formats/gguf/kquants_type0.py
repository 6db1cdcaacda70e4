"""GGML type-0 (symmetric: scale only) K-quants Q3_K and Q6_K (super-blocks of 256 = 16 sub-blocks of 16).

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

With an importance matrix (``encode(x, imatrix=w)``) the searches are ``quantize_row_q3_K_impl`` /
``quantize_row_q6_K_impl`` instead (kernels in :mod:`._imx_kernels`); the packing is shared.
"""

from __future__ import annotations

import numpy as np

from ._imx_kernels import q3k_imatrix, q6k_imatrix_scales
from ._qx_kernels import kernel_input, q3k_codes, q6k_codes, q6k_from_scales
from .common import (
    GGMLFormat,
    get_fp16,
    pack_2bit,
    pack_bits,
    pack_nibbles,
    put_fp16,
    register,
    scale_rows,
    signed_scale6,
    unpack_2bit,
    unpack_bits,
    unpack_nibbles,
)
from .kquants_type1 import nearest_int


class Q3_K(GGMLFormat):
    name = "q3_k"
    description = "llama.cpp 3-bit K-quant: 16x16 sub-blocks with 6-bit scales and an fp16 super-scale"

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        return self._pack(*q3k_codes(kernel_input(blocks)))

    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``quantize_row_q3_K_impl``: no special case for an all-zero scale vector (then
        ``d_block = 0`` and every 6-bit scale is stored as 32, i.e. 0)."""
        x = kernel_input(rows.reshape(-1, 256))
        L0, sc6, d_block = q3k_imatrix(x, kernel_input(w), rows.shape[1])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # overflow: inf, as in C
            d16 = d_block.astype(np.float16)  # GGML_FP32_TO_FP16: round to nearest even
            # re-derive the codes from the rounded scales: d = fp16(d_block) * (scale6 - 32) in
            # float32, q = clamp(nearest_int(x/d), -4, 3) + 4; a sub-block with d == 0 keeps L0
            d = d16.astype(np.float32)[:, None] * (sc6.astype(np.float32) - np.float32(32))
            dz = d.reshape(-1, 1)
            q = nearest_int(x.reshape(-1, 16) / np.where(dz == 0, np.float32(1), dz))
        L = np.where(dz == 0, L0.reshape(-1, 16), (np.clip(q, -4, 3) + 4).astype(np.uint8))
        return self._pack(L.reshape(-1, 256), sc6, d16.view(np.uint16))

    def _pack(self, L: np.ndarray, sc6: np.ndarray, dbits: np.ndarray) -> np.ndarray:
        n = L.shape[0]
        out = np.empty((n, self.type_size), np.uint8)
        out[:, 0:32] = pack_bits(L >> 2)  # hmask: the high bit of each 3-bit code
        out[:, 32:96] = pack_2bit(L & 3)
        # 16 six-bit scales: low nibbles j and j+8 share byte j, high 2 bits of j at byte 8 + j%4
        out[:, 96:104] = pack_nibbles(sc6, 16)
        out[:, 104:108] = pack_2bit(sc6 >> 4, lanes=4)
        put_fp16(out, 108, dbits.view(np.float16))  # the kernel rounded d to fp16 (GGML's way)
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        s = raw[:, 96:108]
        scale = signed_scale6(unpack_nibbles(s[:, :8], 16), unpack_2bit(s[:, 8:12], lanes=4))
        dl = get_fp16(raw, 108) * scale  # (n, 16): the d*scale product first, as in C
        offset = (unpack_bits(raw[:, 0:32]) ^ 1) << 2  # 4 where the high bit is clear
        q = unpack_2bit(raw[:, 32:96]).astype(np.int8) - offset.astype(np.int8)
        return scale_rows(dl, q)


class Q6_K(GGMLFormat):
    name = "q6_k"
    description = "llama.cpp 6-bit K-quant: 16x16 sub-blocks with int8 scales and an fp16 super-scale"

    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        return self._pack(*q6k_codes(kernel_input(blocks)))

    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``quantize_row_q6_K_impl``: the imatrix itself weights ``make_qx_quants`` (its
        ``sigma2`` term is commented out in llama.cpp); the rest is the reference tail."""
        x = kernel_input(rows.reshape(-1, 256))
        L, scales = q6k_imatrix_scales(x, kernel_input(w), rows.shape[1])
        return self._pack(*q6k_from_scales(x, scales, L))

    def _pack(self, L: np.ndarray, sc: np.ndarray, dbits: np.ndarray) -> np.ndarray:
        n = L.shape[0]
        out = np.empty((n, self.type_size), np.uint8)
        out[:, 0:128] = pack_nibbles(L, 128)  # per 128 values: ql[l] = v[l] | v[l+64] << 4
        out[:, 128:192] = pack_2bit(L >> 4)
        out[:, 192:208] = sc.view(np.uint8)
        put_fp16(out, 208, dbits.view(np.float16))
        return out

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        dl = get_fp16(raw, 208) * raw[:, 192:208].view(np.int8).astype(np.float32)  # (n, 16)
        q = unpack_nibbles(raw[:, 0:128], 128) | (unpack_2bit(raw[:, 128:192]) << 4)
        return scale_rows(dl, q.astype(np.int8) - np.int8(32))


register(Q3_K())
register(Q6_K())
