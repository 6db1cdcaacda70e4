"""A small, fast reader for GGUF files (header, metadata, tensor table, dequantized tensors).

GGUF is llama.cpp's container (spec: ggml ``docs/gguf.md``): magic ``GGUF``, version, tensor
count, metadata key/value pairs, a tensor table (name, dims fastest-first, ggml type, offset),
then the aligned data section. gguf-py's ``GGUFReader`` builds a numpy view for every string of
the vocabulary, which takes seconds for a 49k-token model; this reader walks the file with
``struct`` and skips string arrays nobody asked for.

Tensors are dequantized with qlab's own GGML decoders (:mod:`qlab.formats.gguf`, bit-exact with
llama.cpp's ``dequantize_row_*``), so the float32 weights a model is built from are exactly the
values llama.cpp computes with; types qlab has no codec for fall back to gguf-py's
``gguf.quants.dequantize``.
"""

from __future__ import annotations

import struct
from collections.abc import Container
from dataclasses import dataclass, field
from functools import cached_property
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

_MAGIC = b"GGUF"
# metadata value types (gguf spec ``gguf_metadata_value_type``): fixed-width scalars
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_FLOAT_TYPES = {0: np.float32, 1: np.float16, 28: np.float64}  # ggml type id -> numpy dtype
_BF16 = 30


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the file: ``shape`` in torch/numpy order (GGUF stores dims fastest-first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int  # absolute, in bytes from the start of the file
    nbytes: int

    @property
    def type_name(self) -> str:
        from gguf.constants import GGMLQuantizationType

        return GGMLQuantizationType(self.ggml_type).name.lower()


@dataclass
class GGUFFile:
    """Metadata and tensor table of a GGUF file; tensor data is memory-mapped and read on demand.

    ``metadata`` holds every key; string arrays not named in ``string_arrays`` are replaced by
    their element count (they are the vocabulary and merges, read only when needed).
    """

    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, TensorInfo]
    _blob: np.ndarray = field(repr=False)

    @classmethod
    def open(cls, path: str | Path, string_arrays: Container[str] = ()) -> GGUFFile:
        """Parse the header and tensor table; a cut or crafted file raises ``ValueError("<path>:
        truncated/corrupt GGUF: ...")`` (sizes and counts are checked against the file length)."""
        path = Path(path)
        size = path.stat().st_size
        if size < 24:
            raise ValueError(f"{path}: truncated/corrupt GGUF: {size} bytes, shorter than the 24-byte header")
        blob = np.memmap(path, mode="r", dtype=np.uint8)
        if bytes(blob[:4]) != _MAGIC:
            raise ValueError(f"{path} is not a GGUF file (no 'GGUF' magic bytes)")
        try:
            return cls._parse(path, blob, string_arrays)
        except (struct.error, OverflowError, MemoryError, UnicodeDecodeError, _Corrupt) as e:
            raise ValueError(f"{path}: truncated/corrupt GGUF: {e}") from None

    @classmethod
    def _parse(cls, path: Path, blob: np.ndarray, string_arrays: Container[str]) -> GGUFFile:
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", blob, 4)
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
        if n_kv > blob.size or n_tensors > blob.size:  # every entry takes several bytes
            raise _Corrupt(f"{n_kv} metadata keys / {n_tensors} tensors cannot fit in {blob.size} bytes")
        pos = 24
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = _string(blob, pos)
            (vtype,) = struct.unpack_from("<I", blob, pos)
            metadata[key], pos = _value(blob, pos + 4, vtype, key in string_arrays)
        table = []
        for _ in range(n_tensors):
            name, pos = _string(blob, pos)
            (ndim,) = struct.unpack_from("<I", blob, pos)
            if ndim > 8:
                raise _Corrupt(f"tensor {name!r} has {ndim} dimensions (at most 8)")
            dims = struct.unpack_from(f"<{ndim}Q", blob, pos + 4)
            ggml_type, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * ndim)
            pos += 4 + 8 * ndim + 12
            table.append((name, tuple(int(d) for d in reversed(dims)), int(ggml_type), int(offset)))
        align = int(metadata.get("general.alignment", 32))
        if align <= 0:
            raise _Corrupt(f"general.alignment is {align}")
        start = (pos + align - 1) // align * align  # the data section begins at the next boundary
        tensors = {}
        for name, shape, t, off in table:
            try:
                info = TensorInfo(name, shape, t, start + off, _nbytes(t, shape))
            except (KeyError, ValueError) as e:
                raise _Corrupt(f"tensor {name!r} has an unknown ggml type {t}") from e
            if info.offset + info.nbytes > blob.size:
                raise _Corrupt(
                    f"tensor {name!r} ends at byte {info.offset + info.nbytes}, the file has {blob.size} "
                    f"bytes (truncated: was the download or copy cut?)"
                )
            tensors[name] = info
        return cls(path, metadata, tensors, blob)

    @cached_property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def raw(self, name: str) -> np.ndarray:
        """The stored bytes of tensor ``name`` (a read-only view into the memory map)."""
        info = self.tensors[name]
        return self._blob[info.offset : info.offset + info.nbytes]

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a float32 array in torch order (dequantized if stored in blocks)."""
        info = self.tensors[name]
        return dequantize(self.raw(name), info.ggml_type, info.shape)


def dequantize(raw: np.ndarray, ggml_type: int, shape: tuple[int, ...]) -> np.ndarray:
    """GGML bytes of ``ggml_type`` -> float32 array of ``shape`` (a fresh, writable array)."""
    if ggml_type in _FLOAT_TYPES:
        return np.frombuffer(raw, _FLOAT_TYPES[ggml_type]).astype(np.float32).reshape(shape)
    if ggml_type == _BF16:  # bf16 is the top half of a float32
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    fmt = _qlab_format(ggml_type)
    if fmt is not None:
        return fmt.decode(fmt.from_bytes(raw, shape)).reshape(shape)
    from gguf import quants  # a type qlab has no codec for: gguf-py's reference dequantizer

    return np.asarray(quants.dequantize(np.asarray(raw), ggml_type), np.float32).reshape(shape)


def _qlab_format(ggml_type: int) -> Any:
    from ..formats import base

    for name in base.names():
        fmt = base.get(name)
        if getattr(fmt, "ggml_type", None) == ggml_type:
            return fmt
    return None


def _nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return prod(shape) // block * size


class _Corrupt(Exception):
    """A size or count in the file that cannot be right (reported as truncated/corrupt GGUF)."""


def _string(blob: np.ndarray, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", blob, pos)
    if pos + 8 + n > blob.size:
        raise _Corrupt(f"a string of {n} bytes at byte {pos} runs past the end of the file ({blob.size} bytes)")
    return bytes(blob[pos + 8 : pos + 8 + n]).decode("utf-8"), pos + 8 + n


def _value(blob: np.ndarray, pos: int, vtype: int, keep_strings: bool) -> tuple[Any, int]:
    if vtype in _SCALAR:
        (v,) = struct.unpack_from(_SCALAR[vtype], blob, pos)
        return v, pos + struct.calcsize(_SCALAR[vtype])
    if vtype == _STRING:
        return _string(blob, pos)
    if vtype != _ARRAY:
        raise ValueError(f"unknown GGUF metadata value type {vtype}")
    etype, count = struct.unpack_from("<IQ", blob, pos)
    pos += 12
    if count > blob.size - pos:  # every element takes at least one byte
        raise _Corrupt(f"an array of {count} elements at byte {pos} cannot fit in the file ({blob.size} bytes)")
    if etype in _SCALAR:
        width = struct.calcsize(_SCALAR[etype])
        values = list(struct.unpack_from(f"<{count}{_SCALAR[etype][1]}", blob, pos))
        return values, pos + count * width
    if etype != _STRING:
        raise ValueError(f"GGUF arrays of type {etype} are not supported")
    if keep_strings:
        out = []
        for _ in range(count):
            s, pos = _string(blob, pos)
            out.append(s)
        return out, pos
    for _ in range(count):  # skip: only the lengths must be walked
        (n,) = struct.unpack_from("<Q", blob, pos)
        pos += 8 + n
    return count, pos


__all__ = ["GGUFFile", "TensorInfo", "dequantize"]
