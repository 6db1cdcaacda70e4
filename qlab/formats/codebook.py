"""bitsandbytes' 4-bit codebook formats: ``nf4`` (NormalFloat4) and ``fp4_bnb``.

Both store, per block of ``block_size`` consecutive values, one **absmax** scale and one 4-bit
index per value into a fixed 16-entry codebook on ``[-1, 1]``; a value decodes to
``code[index] * absmax``. The formats are bit-exact with ``bitsandbytes.functional.quantize_4bit``
/ ``dequantize_4bit`` on CPU (bitsandbytes 0.50: the ``default`` backend's ``quantize_4bit`` and
the C ``dequantizeBlockwise4bitCpu``):

* ``absmax = max |x|`` over the block (float32). The value is scaled by a float32 *reciprocal*,
  ``x * (1 / max(absmax, 1e-38f))`` (two roundings, not one division), clamped to ``[-1, 1]``.
* The index is the nearest code, found by comparing with the float32 midpoints
  ``(c[k] + c[k+1]) / 2`` of the *sorted* codebook: a value exactly on a midpoint goes to the
  lower code (``torch.bucketize``, right=False == ``np.searchsorted(side="left")``).
* Packing: two indices per byte, the **first value in the high nibble** (``q[0] << 4 | q[1]``).
* Decoding: ``code[index] * absmax`` in float32 (bnb then rounds to the input dtype; qlab returns
  the float32 product, which rounds to bnb's float16/bfloat16 output under round-to-nearest-even).

Stored parts (``Encoded.parts``): ``codes`` uint8 ``(*shape[:-1], row // 2)`` (bnb's packed
bytes, in the same order), ``absmax`` float32 per block -- or, with ``double_quant``, ``absmax``
uint8 per block, ``absmax_scale`` float32 per 256 blocks and ``absmax_offset`` a float32 scalar
(bnb's ``QuantState.absmax``, ``state2.absmax`` and ``offset``). float16/bfloat16 inputs are
widened to float32 first, exactly as bnb's ``A.float()``, so they give the same bytes.

bitsandbytes flattens the whole tensor before cutting blocks; qlab requires the row (last axis)
to be a multiple of ``block_size`` (``ValueError`` otherwise, no padding), so blocks never
straddle rows and the two views give the same blocks and the same bytes.

``double_quant=True`` is bnb's ``compress_statistics``: the float32 absmax are centred on their
mean (``offset``) and stored with 8-bit blockwise *dynamic* quantization (groups of 256 absmax,
one float32 scale per group) -- see :func:`quantize_8bit_blockwise`.

References: Dettmers et al., "QLoRA: Efficient Finetuning of Quantized LLMs", 2023
(arXiv:2305.14314, NF4 and double quantization); Dettmers, "8-Bit Approximations for
Parallelism in Deep Learning", 2015 (arXiv:1511.04561, the dynamic 8-bit map); bitsandbytes
``functional.py`` (``get_4bit_type``, ``create_dynamic_map``) and ``csrc/cpu_ops.cpp``.
"""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar

import numpy as np
from numba import njit

from .base import Encoded, Format, Layout, check_blocks, check_finite, register

__all__ = [
    "NF4_CODE",
    "FP4_BNB_CODE",
    "DYNAMIC_8BIT_CODE",
    "BLOCK_SIZES",
    "DOUBLE_QUANT_GROUP",
    "dynamic_map",
    "quantize_8bit_blockwise",
    "dequantize_8bit_blockwise",
]

F32 = np.float32

#: NormalFloat4 (QLoRA, Dettmers et al. 2023, appendix E): quantiles of N(0, 1) normalised to
#: [-1, 1], with an exact zero and one extra positive level (``create_normal_map(0.9677083)``),
#: as float32; the index is the 4-bit code (the table is sorted).
NF4_CODE = np.array(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ],
    dtype=F32,
)

#: bitsandbytes' FP4 (1 sign, 2 exponent, 1 mantissa bit, bias 2 -- *not* OCP E2M1): code
#: ``s eee`` with ``s`` the top bit; magnitudes {0, 0.0625, 8, 12, 4, 6, 2, 3} divided by 12 in
#: float32, as ``get_4bit_type("fp4")`` builds them. Index 8 (sign bit, zero magnitude) is
#: +0.0 there (Python's ``-0`` is the int 0) and in the AVX-512 decoder; only bnb's scalar C
#: fallback table holds -0.0, which compares equal.
FP4_BNB_CODE = np.array([0, 0.0625, 8, 12, 4, 6, 2, 3, 0, -0.0625, -8, -12, -4, -6, -2, -3], dtype=F32) / F32(
    12
)

BLOCK_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # quantize_4bit's accepted blocksizes
DOUBLE_QUANT_GROUP = 256  # quantize_4bit(compress_statistics=True) uses blocksize=256 for the absmax


# -- the dynamic 8-bit map and bnb's CPU 8-bit blockwise quantizer ------------------------------
def _linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps, dtype=float32)`` on CPU: float32 step, the first half
    counted up from ``start`` and the second half down from ``end``, each as one fused
    multiply-add (emulated exactly in float64: every term fits in 53 bits)."""
    s, e = F32(start), F32(end)
    step = np.float64((e - s) / F32(steps - 1))
    i = np.arange(steps, dtype=np.float64)
    half = steps // 2
    out = np.where(i < half, np.float64(s) + step * i, np.float64(e) - step * (steps - 1 - i))
    return out.astype(F32)


def dynamic_map() -> np.ndarray:
    """bnb's signed dynamic 8-bit map (``create_dynamic_map(True, 7, 8)``), 256 sorted float32.

    For exponent ``i = 0..6`` there are ``2**i`` fraction levels: the midpoints of
    ``linspace(0.1, 1, 2**i + 1)`` times ``10**(i - 6)`` (a float32 multiply), both signs; plus 0
    and 1. The smallest code is -0.99297, the largest 1.0.
    """
    parts = [np.array([0.0, 1.0], dtype=F32)]
    for i in range(7):
        b = _linspace_f32(0.1, 1.0, 2**i + 1)
        v = F32(10.0 ** (i - 6)) * ((b[:-1] + b[1:]) / F32(2))
        parts += [v, -v]
    return np.sort(np.concatenate(parts))


DYNAMIC_8BIT_CODE = dynamic_map()
_LUT_SIZE = 65536


@cache
def _dynamic_lut() -> np.ndarray:
    """bnb's CPU ``build_quantize_lut`` for the dynamic map: bin ``i`` of 65536 stands for
    ``v_i = 2i / 65535 - 1`` (float32 division, then subtraction) and holds the number of code
    midpoints ``0.5 * (c[k] + c[k+1])`` strictly below ``v_i``."""
    c = DYNAMIC_8BIT_CODE
    mids = (c[:-1] + c[1:]) * F32(0.5)
    v = (np.arange(_LUT_SIZE, dtype=F32) * F32(2)) / F32(_LUT_SIZE - 1) - F32(1)
    return np.searchsorted(mids, v, side="left").astype(np.uint8)


def quantize_8bit_blockwise(v: np.ndarray, group: int = DOUBLE_QUANT_GROUP) -> tuple[np.ndarray, np.ndarray]:
    """bnb's CPU ``quantize_blockwise`` (float32 input, dynamic map): uint8 codes and float32 absmax
    per group of ``group`` values (a shorter last group is allowed).

    The CPU kernel (``quantize_cpu_impl``) is *not* an exact nearest-code search: it clamps the
    normalised value ``v = x * (1 / absmax)`` to [-1, 1], maps it to one of 65536 LUT bins,
    ``trunc(fma((v + 1) * 0.5, 65535, 0.5))`` (the shipped binary fuses the last multiply-add;
    for every float32 in [0, 1] the unfused form gives the same bin -- checked exhaustively),
    and reads the code from the LUT (:func:`_dynamic_lut`), so a value near a code midpoint can
    get the farther code. A group whose absmax is 0 gets code 0 everywhere.
    """
    v = np.ascontiguousarray(v, dtype=F32).reshape(-1)
    n = v.size
    ng = -(-n // group)
    padded = np.zeros(ng * group, dtype=F32)  # zeros cannot raise a max of |v| (>= 0)
    padded[:n] = v
    absmax = np.abs(padded.reshape(ng, group)).max(axis=1)
    zero = absmax == 0
    inv = np.divide(F32(1), absmax, out=np.ones_like(absmax), where=~zero)  # float32 reciprocal
    s = (padded.reshape(ng, group) * inv[:, None]).reshape(-1)[:n]  # then a float32 multiply
    np.clip(s, F32(-1), F32(1), out=s)
    h = (s + F32(1)) * F32(0.5)
    # h is a multiple of 2**-25 in [0, 1]: h * 65535 + 0.5 is exact in float64, so one rounding
    # to float32 reproduces the FMA; the cast to an integer truncates like cvttss2si.
    idx = (h.astype(np.float64) * (_LUT_SIZE - 1) + 0.5).astype(F32).astype(np.int32)
    codes = _dynamic_lut()[idx]
    codes[np.repeat(zero, group)[:n]] = 0
    return codes, absmax


def dequantize_8bit_blockwise(
    codes: np.ndarray, absmax: np.ndarray, group: int = DOUBLE_QUANT_GROUP
) -> np.ndarray:
    """``code[q] * absmax[group]`` in float32 (bnb's ``dequantizeBlockwise8bitCpu``)."""
    codes = codes.reshape(-1)
    scale = absmax[np.arange(codes.size) // group]
    return DYNAMIC_8BIT_CODE[codes] * scale


def _torch_mean(a: np.ndarray) -> np.float32:
    """The float32 mean exactly as bnb computes it (``absmax.mean()`` in torch). Torch's CPU sum
    uses a vectorised cascade whose order cannot be reproduced portably in numpy, so this one
    reduction is delegated to torch; ``nan`` for no blocks is replaced by 0 (bnb stores ``nan``)."""
    if a.size == 0:
        return F32(0)
    import torch

    return F32(torch.from_numpy(a).mean().item())


# -- numba kernels: one pass per block, no temporaries ------------------------------------------
@njit(cache=True, nogil=True)
def _encode4(
    blocks: np.ndarray,
    mids: np.ndarray,
    order: np.ndarray,
    tiny: np.float32,
    packed: np.ndarray,
    absmax: np.ndarray,
) -> None:
    """bnb's default-backend ``quantize_4bit`` per block: float32 absmax, float32 reciprocal of
    ``max(absmax, tiny)``, one float32 multiply per value, then the nearest code as the number
    of sorted midpoints strictly below the value (== ``searchsorted(side="left")``: a value on a
    midpoint goes to the lower code; branch-free, so it vectorises), packed high nibble first.
    The clamp to [-1, 1] is left out: it cannot move a value across a midpoint (all lie inside).
    """
    one = np.float32(1.0)
    bs = blocks.shape[1]
    q = np.empty(bs, dtype=np.uint8)
    for b in range(blocks.shape[0]):
        m = np.float32(0.0)
        for j in range(bs):
            m = max(m, abs(blocks[b, j]))
        absmax[b] = m
        inv = one / max(m, tiny)
        for j in range(bs):
            v = blocks[b, j] * inv
            k = 0
            for i in range(15):
                k += v > mids[i]
            q[j] = k
        for j in range(0, bs, 2):
            packed[b, j // 2] = (order[q[j]] << 4) | order[q[j + 1]]


@njit(cache=True, nogil=True)
def _decode4(packed: np.ndarray, absmax: np.ndarray, code: np.ndarray, out: np.ndarray) -> None:
    """``code[nibble] * absmax`` in float32, high nibble first (``dequantizeBlockwise4bitCpu``)."""
    for b in range(packed.shape[0]):
        s = absmax[b]
        for j in range(packed.shape[1]):
            byte = packed[b, j]
            out[b, 2 * j] = code[byte >> 4] * s
            out[b, 2 * j + 1] = code[byte & 15] * s


# -- the formats ---------------------------------------------------------------------------------
class BnbCodebook4bit(Format):
    """A bitsandbytes 4-bit format: 16-entry codebook, one absmax per block, optional double quant."""

    family: ClassVar[str] = "codebook"
    defaults: ClassVar[dict[str, Any]] = {"block_size": 64, "double_quant": False}

    def __init__(self, name: str, code: np.ndarray, description: str) -> None:
        self.name = name
        self.description = description
        self.code = code
        # stable order: for FP4 the two zeros (indices 0 and 8) tie and index 0 sorts first, so
        # a value on [-midpoint, 0] gets index 0 but one on (0, midpoint] gets index 8 -- the
        # order bnb's torch.argsort gives (checked in the tests).
        self.order = np.argsort(code, kind="stable").astype(np.uint8)
        srt = code[self.order]
        self.midpoints = (srt[:-1] + srt[1:]) / F32(2)

    def _validate(self, opts: dict[str, Any]) -> None:
        bs = opts["block_size"]
        if isinstance(bs, bool) or not isinstance(bs, int | np.integer) or int(bs) not in BLOCK_SIZES:
            raise ValueError(f"{self.name}: block_size must be one of {BLOCK_SIZES}, got {bs!r}")
        opts["block_size"] = int(bs)
        if not isinstance(opts["double_quant"], bool | np.bool_):
            raise ValueError(f"{self.name}: double_quant must be True or False, got {opts['double_quant']!r}")
        opts["double_quant"] = bool(opts["double_quant"])

    def layout(self, **options: Any) -> Layout:
        """Without double quant: ``4 (absmax fp32) + bs/2 (codes)`` per block (4.5 bits at 64).

        With double quant a block's absmax is one byte, but every 256 blocks share a float32
        scale and the tensor one float32 offset, so no whole-byte layout exists per block: the
        layout describes the *super-block* of 256 blocks (``256 * block_size`` values), and the
        offset is ``per_tensor`` (e.g. nf4/64: 8192 + 256 + 4 = 8452 bytes / 16384 values, 4.127
        bits). ``Encoded.nbytes`` counts a shorter last group exactly.
        """
        o = self.options(**options)
        bs = o["block_size"]
        if not o["double_quant"]:
            return Layout(bs, (("absmax fp32", 4), (f"codes {bs}x4bit", bs // 2)))
        g = DOUBLE_QUANT_GROUP
        return Layout(
            bs * g,
            ((f"codes {bs * g}x4bit", bs * g // 2), (f"absmax {g}x uint8", g), ("absmax scale fp32", 4)),
            per_tensor=(("absmax offset fp32", 4),),
        )

    def _encode(self, x: np.ndarray, **opts: Any) -> Encoded:
        bs, dq = opts["block_size"], opts["double_quant"]
        check_blocks(self.name, x, bs)
        check_finite(self.name, x)
        blocks = x.reshape(-1, bs)
        absmax = np.empty(blocks.shape[0], dtype=F32)
        packed = np.empty((blocks.shape[0], bs // 2), dtype=np.uint8)
        # bnb: x * (1 / absmax.clamp(min=1e-38)); the clamp keeps all-zero blocks finite (-> 0)
        _encode4(blocks, self.midpoints, self.order, F32(1e-38), packed, absmax)
        shape = tuple(x.shape)
        parts: dict[str, np.ndarray] = {"codes": packed.reshape(*shape[:-1], shape[-1] // 2)}
        if dq:
            offset = _torch_mean(absmax)
            qa, scale = quantize_8bit_blockwise(absmax - offset)
            parts |= {"absmax": qa, "absmax_scale": scale, "absmax_offset": np.array(offset, dtype=F32)}
        else:
            parts["absmax"] = absmax
        nbytes = sum(int(p.nbytes) for p in parts.values())
        return Encoded(self.name, shape, parts, nbytes, dict(opts))

    def block_absmax(self, enc: Encoded) -> np.ndarray:
        """The float32 absmax of every block, as decoding uses it (double quantization undone)."""
        p = enc.parts
        if enc.options["double_quant"]:
            absmax = dequantize_8bit_blockwise(p["absmax"], p["absmax_scale"])
            absmax += p["absmax_offset"].astype(F32)
            return absmax
        return np.asarray(p["absmax"], dtype=F32)

    def _decode(self, enc: Encoded) -> np.ndarray:
        bs = enc.options["block_size"]
        p = enc.parts
        n = enc.size
        if p["codes"].size * 2 != n or p["absmax"].size * bs != n:
            # the numba kernel does not bounds-check: refuse inconsistent parts up front
            raise ValueError(f"{self.name}: parts do not match shape {enc.shape} and block size {bs}")
        absmax = self.block_absmax(enc)
        out = np.empty(enc.shape, dtype=F32)
        _decode4(
            p["codes"].reshape(-1, bs // 2),
            np.ascontiguousarray(absmax, dtype=F32),
            self.code,
            out.reshape(-1, bs),
        )
        return out


NF4 = register(
    BnbCodebook4bit(
        "nf4", NF4_CODE, "bitsandbytes NormalFloat4 (QLoRA): 16 normal quantiles x blockwise absmax"
    )
)
FP4_BNB = register(
    BnbCodebook4bit(
        "fp4_bnb", FP4_BNB_CODE, "bitsandbytes FP4 (sign, 2-bit exponent, 1-bit mantissa) x blockwise absmax"
    )
)
