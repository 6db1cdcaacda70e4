"""Shared machinery of the GGML block formats (the gguf-py ``quants.py`` shape).

A subclass sets ``name``/``description`` and implements two vectorised functions on whole
arrays of blocks -- never a Python loop over blocks:

* ``quantize_blocks(blocks)``: float32 ``(n_blocks, block_size)`` -> uint8 ``(n_blocks, type_size)``
* ``dequantize_blocks(raw)``: uint8 ``(n_blocks, type_size)`` -> float32 ``(n_blocks, block_size)``

The bytes are GGML's exact in-memory/on-disk layout, so ``to_bytes`` is a plain copy and the
result can be written into a GGUF file as is. Input checks live here, once for every codec: rows
must be whole blocks (``check_blocks``) and values finite (``check_finite``: a NaN/Inf would
poison a whole block's scale, and llama.cpp has no defined result for it).

Importance matrices: every GGML type takes ``encode(x, imatrix=w)`` -- llama.cpp's
``quant_weights`` of ``ggml_quantize_chunk``, one positive float32 per column (what
``llama-imatrix`` stores: the mean of x**2 of each input column). :func:`check_imatrix` validates
it (once, for every type); a type whose llama.cpp quantizer reads it implements
``quantize_imatrix(rows, w)``, the others (Q8_0, TQ1_0, TQ2_0: llama.cpp ignores it) give the plain
bytes.

The numpy byte helpers below are the bit layouts several GGML types share (fp16 fields, nibble
pairs, 2-bit groups, 1-bit planes); the numba helpers live in :mod:`._qx_kernels`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..base import Encoded, Format, Layout, check_blocks, check_finite, register
from ..specs import ggml_layout, ggml_type_id

#: the largest finite fp16 value: GGML stores its block scales (``d``, ``dmin``, ``m``) as fp16
FP16_MAX = 65504.0
OVERFLOWS = ("raise", "inf")


class GGMLFormat(Format):
    """``overflow`` (every GGML type): what to do when a block's fp16 scale would exceed 65504
    (inputs from about 6.5e4 for Q4_1 up to 5e8 for Q6_K). ``"raise"`` (default): a ``ValueError``
    naming the block; ``"inf"``: store the infinite scale as llama.cpp does (the block then
    decodes to NaN/Inf), for byte-exact comparison with llama.cpp."""

    family: ClassVar[str] = "gguf"
    defaults: ClassVar[dict[str, Any]] = {"imatrix": None, "overflow": "raise"}
    #: llama.cpp asserts ``quant_weights`` for this type (``GGML_ASSERT(quant_weights && ...)``)
    requires_imatrix: ClassVar[bool] = False

    def __init__(self) -> None:
        lay = ggml_layout(self.name)
        self.ggml_type: int = ggml_type_id(self.name)
        self.type_size: int = lay.nbytes
        self._layout = lay

    def layout(self, **options: Any) -> Layout:
        self.options(**options)
        return self._layout

    def _validate(self, opts: dict[str, Any]) -> None:
        if opts["overflow"] not in OVERFLOWS:
            raise ValueError(f"{self.name}: overflow must be one of {OVERFLOWS}, got {opts['overflow']!r}")
        check_imatrix(self.name, opts["imatrix"])

    def check_overflow(self, blocks: np.ndarray, raw: np.ndarray, overflow: str) -> None:
        """Raise when a block's fp16 scale overflowed: only blocks with max |x| > 65504 can, and
        those are decoded and must come back finite and not all zero (past the fp16 range some
        types store an infinite scale, others a zero one). ``overflow="inf"`` keeps llama.cpp's
        bytes as they are."""
        if overflow == "inf" or not raw.shape[0]:
            return
        amax = np.abs(blocks).max(axis=1)
        big = np.flatnonzero(amax > FP16_MAX)
        if not big.size:
            return
        with np.errstate(all="ignore"):
            y = np.abs(self.dequantize_blocks(np.ascontiguousarray(raw[big]))).max(axis=1)
        bad = np.zeros(raw.shape[0], bool)
        bad[big] = ~np.isfinite(y) | (y == 0)
        if bad.any():
            i = int(np.argmax(bad))
            bs = self._layout.block_size
            raise ValueError(
                f"{self.name}: block {i} (values {i * bs}..{(i + 1) * bs - 1} of the flattened input, "
                f"max |x| = {float(amax[i]):.4g}) needs a block scale above the fp16 limit {FP16_MAX:g}; "
                f"{int(bad.sum())} block(s) overflow. Scale the tensor down, use a format with fp32 "
                f"scales (int8, fp8_e4m3), or pass overflow='inf' for llama.cpp's bytes (NaN/Inf on decode)"
            )

    # -- contract -------------------------------------------------------------------------------
    def _encode(self, x: np.ndarray, **opts: Any) -> Encoded:
        bs = self._layout.block_size
        check_blocks(self.name, x, bs)
        check_finite(self.name, x)
        w = opts["imatrix"]
        if w is None and self.requires_imatrix:
            raise ValueError(
                f"{self.name}: an importance matrix is required (llama.cpp refuses to quantize "
                f"{self.name} without one): pass imatrix=w, a float32 vector of one positive value per column"
            )
        blocks = kernel_input(x.reshape(-1, bs))
        if w is not None:
            n = check_imatrix_length(self.name, w, x.shape)
        if w is None or not x.size:
            raw = self.quantize_blocks(blocks)
        else:
            raw = self.quantize_imatrix(x.reshape(-1, n), w)
        assert raw.dtype == np.uint8 and raw.shape == (blocks.shape[0], self.type_size)
        self.check_overflow(blocks, raw, opts["overflow"])
        return Encoded(self.name, tuple(x.shape), {"blocks": raw}, int(raw.nbytes), {})

    def expected_parts(self, shape: tuple[int, ...], options: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], Any]]:
        """One part, ``blocks``: uint8 ``(n_blocks, type_size)``; rows must be whole blocks."""
        bs = self._layout.block_size
        if shape and shape[-1] % bs:
            raise ValueError(f"{self.name}: Encoded row length {shape[-1]} is not a multiple of the block size {bs}")
        n = int(np.prod(shape, dtype=np.int64)) // bs
        return {"blocks": ((n, self.type_size), np.dtype(np.uint8))}

    def _decode(self, enc: Encoded) -> np.ndarray:
        raw = enc.parts["blocks"]
        return self.dequantize_blocks(raw.reshape(-1, self.type_size))

    def to_bytes(self, enc: Encoded) -> bytes:
        return enc.parts["blocks"].tobytes()

    def from_bytes(self, raw: bytes | bytearray | memoryview | np.ndarray, shape: tuple[int, ...]) -> Encoded:
        """Wrap GGML block bytes (as found in a GGUF file) for ``decode``. ``shape`` is a tuple of
        non-negative Python/numpy integers (floats are refused, never truncated)."""
        shape = check_shape(self.name, shape)
        buf = (
            np.frombuffer(raw, dtype=np.uint8)
            if not isinstance(raw, np.ndarray)
            else raw.view(np.uint8).reshape(-1)
        )
        bs = self._layout.block_size
        n = int(np.prod(shape, dtype=np.int64))
        if shape and shape[-1] % bs:
            raise ValueError(f"{self.name}: row length {shape[-1]} is not a multiple of the block size {bs}")
        expected = n // bs * self.type_size
        if buf.size != expected:
            raise ValueError(
                f"{self.name}: {buf.size} bytes given, shape {shape} needs {expected} "
                f"({n // bs} blocks x {self.type_size} bytes)"
            )
        return Encoded(self.name, shape, {"blocks": buf.reshape(-1, self.type_size).copy()}, expected, {})

    # -- to implement ---------------------------------------------------------------------------
    def quantize_blocks(self, blocks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def quantize_imatrix(self, rows: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Float32 rows ``(m, n)`` and their validated importance ``w`` (``(n,)``) -> uint8
        ``(m*n/block_size, type_size)``. By default the imatrix is ignored, as llama.cpp's
        ``quantize_q8_0`` / ``quantize_tq1_0`` / ``quantize_tq2_0`` do (``(void)quant_weights``)."""
        return self.quantize_blocks(rows.reshape(-1, self._layout.block_size))

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def kernel_input(blocks: np.ndarray) -> np.ndarray:
    """C-contiguous, writeable float32 (a read-only array would make numba compile a second
    specialisation of every kernel)."""
    out = np.ascontiguousarray(blocks, dtype=np.float32)
    return out if out.flags.writeable else out.copy()


def check_imatrix(name: str, w: Any) -> None:
    """``imatrix`` is ``None`` or a 1-D float32 numpy array, finite and > 0 everywhere (llama.cpp
    takes ``quant_weights`` as they are; a zero or negative weight makes its searches degenerate)."""
    if w is None:
        return
    if not isinstance(w, np.ndarray) or w.dtype != np.float32 or w.ndim != 1:
        what = f"{type(w).__name__}" if not isinstance(w, np.ndarray) else f"array of {w.dtype}, shape {w.shape}"
        raise ValueError(
            f"{name}: imatrix must be a 1-D float32 numpy array (one importance per column), got {what}"
        )
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{name}: imatrix must be finite and > 0 everywhere; {int(bad.sum())} value(s) are not, "
            f"first at column {i}: {w[i]!r}"
        )


def check_imatrix_length(name: str, w: np.ndarray, shape: tuple[int, ...]) -> int:
    """The row length ``n`` (last axis of ``shape``), which must be ``w``'s length."""
    n = shape[-1] if shape else 1
    if w.shape[0] != n:
        raise ValueError(
            f"{name}: imatrix has {w.shape[0]} values, but rows have {n} (last axis of shape "
            f"{tuple(shape)}); it needs one value per column"
        )
    return n


def check_shape(name: str, shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of ints; anything but a sequence of non-negative integers raises."""
    if isinstance(shape, int | np.integer) and not isinstance(shape, bool):
        shape = (shape,)
    ok = isinstance(shape, tuple | list) and all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 0 for s in shape
    )
    if not ok:
        raise ValueError(
            f"{name}: shape must be a tuple of non-negative integers (e.g. (4, 256)), got {shape!r}"
        )
    return tuple(int(s) for s in shape)


# -- byte helpers shared by the codecs ----------------------------------------------------------
_U8 = np.uint8
_SHIFT2 = np.array([0, 2, 4, 6], _U8)  # the four 2-bit slots of a byte
_SHIFT1 = np.arange(8, dtype=_U8)  # the eight 1-bit slots of a byte


def put_fp16(out: np.ndarray, byte: int, v: np.ndarray) -> None:
    """Store ``v`` (float32 or float16, one per block row) as fp16 at byte offset ``byte`` of every
    row of ``out``. float32 is rounded to nearest even like ``GGML_FP32_TO_FP16``; a value above
    65504 becomes inf, as in GGML (numpy's overflow warning for that is silenced)."""
    with np.errstate(over="ignore"):
        h = np.asarray(v).astype(np.float16)
    out[:, byte : byte + 2] = h.reshape(-1, 1).view(_U8)


def get_fp16(raw: np.ndarray, byte: int) -> np.ndarray:
    """The fp16 at byte offset ``byte`` of every block row, as float32 ``(n, 1)`` (exact)."""
    return np.ascontiguousarray(raw[:, byte : byte + 2]).view(np.float16).astype(np.float32)


def pack_nibbles(q: np.ndarray, group: int) -> np.ndarray:
    """Codes ``(n, k*group)`` -> bytes ``(n, k*group/2)``: in each group, byte ``j`` holds the low
    4 bits of code ``j`` and of code ``j + group/2`` (high nibble). IQ4_NL/IQ4_XS/legacy: groups of
    32; Q4_K/Q5_K: 64 (two sub-blocks share 32 bytes); Q6_K: 128 (``ql``)."""
    n, m = q.shape  # (explicit sizes: a -1 cannot be resolved for 0 blocks)
    g = q.reshape(n, m // group, 2, group // 2)
    return ((g[:, :, 0] & _U8(15)) | (g[:, :, 1] << _U8(4))).reshape(n, m // 2)


def unpack_nibbles(b: np.ndarray, group: int) -> np.ndarray:
    """Inverse of :func:`pack_nibbles`: bytes ``(n, k*group/2)`` -> uint8 codes 0..15."""
    n, m = b.shape
    src = b.reshape(n, 2 * m // group, group // 2)
    out = np.empty((n, 2 * m // group, 2, group // 2), _U8)
    np.bitwise_and(src, _U8(15), out=out[:, :, 0])
    np.right_shift(src, _U8(4), out=out[:, :, 1])
    return out.reshape(n, 2 * m)


def pack_2bit(q: np.ndarray, lanes: int = 32) -> np.ndarray:
    """Codes 0..3 ``(n, 4*lanes*k)`` -> bytes ``(n, lanes*k)``: byte ``lanes*g + l`` holds code
    ``4*lanes*g + lanes*t + l`` at bits ``2t``. With 32 lanes: the ``qs`` of Q2_K/Q3_K/TQ2_0 and
    the ``qh`` of Q6_K (two groups of 128 values); with 4: the high bits of Q3_K's 16 scales."""
    n, m = q.shape
    g = q.reshape(n, m // (4 * lanes), 4, lanes)
    return (g[:, :, 0] | (g[:, :, 1] << _U8(2)) | (g[:, :, 2] << _U8(4)) | (g[:, :, 3] << _U8(6))).reshape(
        n, m // 4
    )


def unpack_2bit(b: np.ndarray, lanes: int = 32) -> np.ndarray:
    """Inverse of :func:`pack_2bit`: uint8 codes 0..3."""
    n, m = b.shape
    return ((b.reshape(n, m // lanes, 1, lanes) >> _SHIFT2[:, None]) & _U8(3)).reshape(n, 4 * m)


def pack_bits(q: np.ndarray) -> np.ndarray:
    """Bits 0/1 ``(n, 256)`` -> ``(n, 32)``: bit ``k`` of byte ``m`` is value ``32k + m`` (Q3_K's
    ``hmask``, Q5_K's ``qh``)."""
    h = q.reshape(q.shape[0], 8, 32) << _SHIFT1[:, None]
    return np.bitwise_or.reduce(h, axis=1)


def unpack_bits(b: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(n, 32)`` -> uint8 bits ``(n, 256)``."""
    return ((b[:, None, :] >> _SHIFT1[:, None]) & _U8(1)).reshape(b.shape[0], 256)


def signed_scale6(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """6-bit block scales from their low nibbles and high 2 bits, minus 32, as float32
    (Q3_K's ``scales``, IQ4_XS's ``scales_l``/``scales_h``)."""
    return ((lo | (hi << _U8(4))).astype(np.int8) - np.int8(32)).astype(np.float32)


def scale_rows(dl: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``dl[:, j] * q`` on sub-block ``j`` of every block: float32 steps ``(n, k)`` times codes
    ``(n, k*s)`` -> float32 ``(n, k*s)``, one float32 product per value (the ``d*scale`` product
    ``dl`` is rounded first, as in C)."""
    n, k = dl.shape
    s = q.shape[1] // k
    return (dl[:, :, None] * q.reshape(n, k, s).astype(np.float32, copy=False)).reshape(n, k * s)


__all__ = [
    "GGMLFormat",
    "check_imatrix",
    "check_imatrix_length",
    "kernel_input",
    "get_fp16",
    "pack_2bit",
    "pack_bits",
    "pack_nibbles",
    "put_fp16",
    "register",
    "scale_rows",
    "signed_scale6",
    "unpack_2bit",
    "unpack_bits",
    "unpack_nibbles",
]
