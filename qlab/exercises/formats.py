"""Exercises of lessons 04-05: decode an FP8 E4M3 bit pattern, bits per weight of a block layout,
decode a GGML Q4_0 block."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import formats
from ._core import Case, Exercise, exercise


# -- lesson 04: decode E4M3 -------------------------------------------------------------------------
def decode_e4m3(code: int) -> float:
    """The value of an 8-bit OCP FP8 E4M3 code (sign 1, exponent 4 with bias 7, mantissa 3;
    exponent field 0 = subnormal; 0x7F / 0xFF = NaN; no infinities)."""
    return float(formats.get("fp8_e4m3").decode_bits(np.array([code], np.uint8))[0])


def _e4m3_cases() -> Iterator[Case]:
    # the interesting codes first (zero, subnormals, the first normal, 1.0, max, NaN), then all 256
    firsts = [0x00, 0x01, 0x07, 0x08, 0x38, 0x7E, 0x7F, 0x80, 0xB8, 0xFE, 0xFF]
    for c in [*firsts, *(c for c in range(256) if c not in firsts)]:
        yield (c,), {}


def _same_float(got: Any, expected: float) -> str | None:
    try:
        g = float(got)
    except (TypeError, ValueError):
        return f"expected a number, got {type(got).__name__}"
    if math.isnan(expected):
        return None if math.isnan(g) else f"got {g!r}, expected NaN (E4M3 has NaN at S.1111.111 and no infinity)"
    if math.isnan(g) or g != expected:
        return f"got {g!r}, expected {expected!r}"
    return None


exercise(Exercise(
    "decode_e4m3", lesson=4,
    prompt="write decode_e4m3(code) -> float: the value of an FP8 E4M3 byte (0..255). Bits: s eeee mmm; "
           "bias 7; exponent field 0 means subnormal (no implicit 1); S.1111.111 is NaN; there is no infinity.",
    hint="sign = -1 if code & 0x80 else 1; e = (code >> 3) & 0xF; m = code & 7. Normal (e > 0): "
         "sign * 2**(e - 7) * (1 + m/8); subnormal (e == 0): sign * 2**(1 - 7) * (m/8); e == 15 and m == 7: NaN.",
    reference=decode_e4m3, cases=_e4m3_cases, compare=_same_float,
))


# -- lesson 05: bits per weight of a block layout ---------------------------------------------------
def block_bits_per_weight(block_size: int, part_bytes: list[int], row_length: int | None = None,
                          per_row_bytes: int = 0) -> float:
    """Bits per weight of a block format: ``8 * sum(part_bytes) / block_size``, plus ``per_row_bytes``
    spread over a row of ``row_length`` values."""
    lay = formats.Layout(block_size, tuple((f"part{i}", b) for i, b in enumerate(part_bytes)),
                         per_row=(("row", per_row_bytes),) if per_row_bytes else ())
    bits = lay.bits_per_weight
    if row_length and per_row_bytes:
        bits += 8.0 * per_row_bytes / row_length
    return bits


def _layout_cases() -> Iterator[Case]:
    for name in ("q4_0", "q8_0", "q4_k", "q6_k", "iq4_xs", "mxfp4", "nvfp4", "nf4", "q2_k", "mxfp8_e4m3"):
        lay = formats.get(name).layout()
        yield (lay.block_size, [b for _, b in lay.parts]), {}
    lay = formats.get("int8").layout()
    yield (lay.block_size, [b for _, b in lay.parts]), {"row_length": 576, "per_row_bytes": 4}


def _close_float(got: Any, expected: float) -> str | None:
    try:
        g = float(got)
    except (TypeError, ValueError):
        return f"expected a number, got {type(got).__name__}"
    if not math.isclose(g, expected, rel_tol=1e-9):
        return f"got {g!r}, expected {expected!r}"
    return None


exercise(Exercise(
    "block_bits_per_weight", lesson=5,
    prompt="write block_bits_per_weight(block_size, part_bytes, row_length=None, per_row_bytes=0) -> float: "
           "the bits per weight of a block format whose blocks of block_size values store the parts listed "
           "in part_bytes (bytes each, e.g. Q4_0: 32 values, [2, 16]); per_row_bytes are stored once per row "
           "of row_length values.",
    hint="bits = 8 * (total bytes of one block) / (values per block); add 8 * per_row_bytes / row_length "
         "when a row length is given. Q4_0: 8 * 18 / 32 = 4.5.",
    reference=block_bits_per_weight, cases=_layout_cases, compare=_close_float,
))


# -- lesson 05: decode a Q4_0 block -----------------------------------------------------------------
def decode_q4_0_block(raw: np.ndarray) -> np.ndarray:
    """The 32 float32 values of one GGML Q4_0 block (18 bytes: fp16 ``d``, then 16 bytes of nibbles;
    byte j holds value j in its low nibble and value j + 16 in its high nibble; value = (q - 8) * d)."""
    fmt = formats.get("q4_0")
    return fmt.decode(fmt.from_bytes(np.asarray(raw, np.uint8), (32,)))


def _q4_0_cases() -> Iterator[Case]:
    from ..models import minilm_weights

    w = minilm_weights("encoder.layer.1.attention.self.value.weight")
    raw = formats.get("q4_0").encode(w).parts["blocks"]
    for i in (0, 1, 2, 500, 4607):
        yield (raw[i].copy(),), {}
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3.0, size=(2, 32)).astype(np.float32)
    for row in formats.get("q4_0").encode(x).parts["blocks"]:
        yield (row.copy(),), {}


def _compare_block(got: Any, expected: np.ndarray) -> str | None:
    g = np.asarray(got, np.float64)
    if g.shape != expected.shape:
        return f"shape {g.shape}, expected {expected.shape} (one block = 32 values)"
    bad = ~np.isclose(g, expected, rtol=0, atol=0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return (f"{int(bad.sum())} of 32 values differ; first at index {i}: got {float(g[i])!r}, expected "
                f"{float(expected[i])!r}")
    return None


exercise(Exercise(
    "decode_q4_0_block", lesson=5,
    prompt="write decode_q4_0_block(raw) -> 32 float32 values: raw is one GGML Q4_0 block, a uint8 array of 18 "
           "bytes: the scale d as fp16 (bytes 0-1, little-endian), then 16 bytes qs; byte j of qs holds the "
           "4-bit code of value j (low nibble) and of value j + 16 (high nibble); value = (code - 8) * d.",
    hint="d = raw[:2].view(np.float16)[0].astype(np.float32); qs = raw[2:]; codes = np.concatenate([qs & 0x0F, "
         "qs >> 4]); return (codes.astype(np.float32) - 8) * d.",
    reference=decode_q4_0_block, cases=_q4_0_cases, compare=_compare_block,
))
