"""Shared machinery of the GGML block formats (the gguf-py ``quants.py`` shape).

A subclass sets ``name``/``description`` and implements two vectorised functions on whole
arrays of blocks -- never a Python loop over blocks:

* ``quantize_blocks(blocks)``: float32 ``(n_blocks, block_size)`` -> uint8 ``(n_blocks, type_size)``
* ``dequantize_blocks(raw)``: uint8 ``(n_blocks, type_size)`` -> float32 ``(n_blocks, block_size)``

The bytes are GGML's exact in-memory/on-disk layout, so ``to_bytes`` is a plain copy and the
result can be written into a GGUF file as is.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..base import Encoded, Format, Layout, check_blocks, register
from ..specs import ggml_layout, ggml_type_id


class GGMLFormat(Format):
    family: ClassVar[str] = "gguf"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        lay = ggml_layout(self.name)
        self.ggml_type: int = ggml_type_id(self.name)
        self.type_size: int = lay.nbytes
        self._layout = lay

    def layout(self, **options: Any) -> Layout:
        self.options(**options)
        return self._layout

    # -- contract -------------------------------------------------------------------------------
    def _encode(self, x: np.ndarray, **opts: Any) -> Encoded:
        bs = self._layout.block_size
        check_blocks(self.name, x, bs)
        blocks = x.reshape(-1, bs)
        raw = self.quantize_blocks(blocks)
        assert raw.dtype == np.uint8 and raw.shape == (blocks.shape[0], self.type_size)
        return Encoded(self.name, tuple(x.shape), {"blocks": raw}, int(raw.nbytes), {})

    def _decode(self, enc: Encoded) -> np.ndarray:
        raw = enc.parts["blocks"]
        return self.dequantize_blocks(raw.reshape(-1, self.type_size))

    def to_bytes(self, enc: Encoded) -> bytes:
        return enc.parts["blocks"].tobytes()

    def from_bytes(self, raw: bytes | bytearray | memoryview | np.ndarray, shape: tuple[int, ...]) -> Encoded:
        """Wrap GGML block bytes (as found in a GGUF file) for ``decode``."""
        shape = tuple(int(s) for s in shape)
        buf = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.view(np.uint8).reshape(-1)
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

    def dequantize_blocks(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# -- byte helpers shared by the codecs ----------------------------------------------------------
def fp16_bytes(v: np.ndarray) -> np.ndarray:
    """float32 (n,) or (n, k) -> fp16 little-endian bytes (n, 2k); numpy rounds to nearest even
    like GGML's ``GGML_FP32_TO_FP16``."""
    return np.ascontiguousarray(v.astype(np.float16)).view(np.uint8).reshape(v.shape[0], -1)


def fp16_from(raw: np.ndarray) -> np.ndarray:
    """uint8 (n, 2k) -> float32 (n, k)."""
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float32)


__all__ = ["GGMLFormat", "fp16_bytes", "fp16_from", "register"]
