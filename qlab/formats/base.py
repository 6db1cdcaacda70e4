"""The contract every numeric format follows, and the registry that maps names to formats.

A format turns a float array into an :class:`Encoded` (the exact bits that would be stored:
codes, scales, metadata) and back. Formats are small objects registered by name, so every API in
qlab accepts a string such as ``"q4_k"`` or ``"fp8_e4m3"`` (the optimum-quanto ``qtype`` idea).

Conventions shared by all formats
---------------------------------
* Input: a numpy array or torch tensor of float16, bfloat16 or float32, any shape. It is
  converted exactly to a C-contiguous float32 numpy array first (every float16/bfloat16 value is
  representable in float32, so no information is lost).
* The **last axis is the row**: blocks, groups and channels run along it.
* ``decode`` returns float32 numpy with the input's shape.
* ``Encoded.nbytes`` counts every stored byte: packed codes, scales, zero-points, tensor scales.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = ["Layout", "Encoded", "Format", "register", "get", "names", "as_float32"]


@dataclass(frozen=True)
class Layout:
    """Bytes of one block, written as a sum of named parts (e.g. Q4_0: ``d 2 + qs 16``).

    ``block_size`` is the number of values the parts cover. ``per_tensor`` lists bytes stored once
    per tensor (e.g. NVFP4's FP32 tensor scale); ``per_row`` bytes stored once per row.
    """

    block_size: int
    parts: tuple[tuple[str, int], ...]
    per_row: tuple[tuple[str, int], ...] = ()
    per_tensor: tuple[tuple[str, int], ...] = ()

    @property
    def nbytes(self) -> int:
        """Bytes per block (sum of the parts)."""
        return sum(n for _, n in self.parts)

    @property
    def formula(self) -> str:
        """The block size as a readable sum, e.g. ``'2 (d) + 16 (qs) = 18 bytes / 32 values'``."""
        terms = " + ".join(f"{n} ({name})" for name, n in self.parts)
        return f"{terms} = {self.nbytes} bytes / {self.block_size} values"

    @property
    def bits_per_weight(self) -> float:
        """Nominal bits per value, per-row and per-tensor overhead excluded."""
        return 8.0 * self.nbytes / self.block_size


@dataclass
class Encoded:
    """The stored form of a quantized tensor.

    ``parts`` holds the named arrays that make up the storage (``codes``, ``scales``, or GGML's
    raw ``blocks``). ``nbytes`` is the exact storage in bytes, metadata included.
    """

    format: str
    shape: tuple[int, ...]
    parts: dict[str, np.ndarray]
    nbytes: int
    options: dict[str, Any] = field(default_factory=dict)
    #: the structure ``encode`` produced (see :meth:`Format.check_parts`); not part of the value
    _layout_sig: Any = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def bits_per_weight(self) -> float:
        """Measured bits per value of this encoding (``8 * nbytes / size``)."""
        return 8.0 * self.nbytes / self.size if self.size else float("nan")

    def to_bytes(self) -> bytes:
        """GGML's exact block layout (GGUF formats only)."""
        return get(self.format).to_bytes(self)

    def decode(self) -> np.ndarray:
        return get(self.format).decode(self)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}:{v.dtype}{list(v.shape)}" for k, v in self.parts.items())
        return f"Encoded({self.format!r}, shape={self.shape}, nbytes={self.nbytes}, parts={{{parts}}})"


def _signature(enc: Encoded) -> Any:
    """The identity of an encoding's structure: shape, and which arrays/option objects it holds."""
    try:
        return (
            enc.format, tuple(enc.shape),
            tuple((k, id(v), v.shape, v.dtype.str) for k, v in enc.parts.items()),
            tuple((k, id(v)) for k, v in enc.options.items()),
        )  # fmt: skip
    except (AttributeError, TypeError):
        return None


def as_float32(x: Any) -> np.ndarray:
    """Convert a numpy array / torch tensor of float16, bfloat16 or float32 to contiguous float32.

    Raises ``TypeError`` for anything else (integers, float64, complex), so that no silent
    precision change happens on the way in.
    """
    if type(x).__module__.startswith("torch"):
        import torch

        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a tensor or array, got {type(x).__name__}")
        if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise TypeError(f"input dtype {x.dtype} is not float16, bfloat16 or float32")
        return np.asarray(x.detach().to("cpu", torch.float32).numpy(), order="C")
    if isinstance(x, np.generic):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected a numpy array or torch tensor, got {type(x).__name__}")
    if x.dtype.name not in ("float16", "bfloat16", "float32"):
        raise TypeError(f"input dtype {x.dtype} is not float16, bfloat16 or float32")
    return np.asarray(x, dtype=np.float32, order="C")


class Format:
    """Base class of a numeric format. Subclasses set the class variables and implement
    ``_encode(x, **options)`` on a contiguous float32 array and ``_decode(enc)``."""

    name: str
    family: ClassVar[str] = ""
    description: str = ""
    #: default values of every option ``encode`` accepts
    defaults: ClassVar[dict[str, Any]] = {}

    # -- the public contract -------------------------------------------------------------------
    def encode(self, x: Any, **options: Any) -> Encoded:
        """Quantize ``x`` (float16/bfloat16/float32, any shape; last axis = row)."""
        x32 = as_float32(x)
        opts = self.options(**options)
        enc = self._encode(x32, **opts)
        enc._layout_sig = _signature(enc)  # made here: its parts fit the layout by construction
        return enc

    def decode(self, enc: Encoded) -> np.ndarray:
        """Dequantize to a float32 numpy array of the encoded shape."""
        if not isinstance(enc, Encoded):
            raise TypeError(f"decode expects an Encoded, got {type(enc).__name__}")
        if enc.format != self.name:
            raise ValueError(f"cannot decode a {enc.format!r} encoding with format {self.name!r}")
        self.check_parts(enc)
        out = self._decode(enc)
        return np.asarray(out, dtype=np.float32).reshape(enc.shape)

    def check_parts(self, enc: Encoded) -> None:
        """Validate an :class:`Encoded` that ``encode`` did not make as it is (built by hand, or
        its shape, options or parts changed since): part names, dtypes and shapes must be the ones
        this format produces for ``enc.shape`` and ``enc.options``, else ``ValueError``. The one
        place every format's decode goes through, so a tampered encoding never decodes silently."""
        sig = _signature(enc)
        if sig is not None and sig == enc._layout_sig:
            return
        shape = enc.shape
        if not isinstance(shape, tuple | list) or not all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ValueError(f"{self.name}: Encoded.shape must be a tuple of non-negative integers, got {shape!r}")
        if not isinstance(enc.parts, dict) or not all(isinstance(v, np.ndarray) for v in enc.parts.values()):
            raise ValueError(f"{self.name}: Encoded.parts must be a dict of numpy arrays")
        want = self.expected_parts(tuple(int(d) for d in shape), dict(enc.options))
        got = {k: (tuple(v.shape), v.dtype) for k, v in enc.parts.items()}
        problems = [f"missing part {k!r}" for k in want if k not in got]
        problems += [f"unexpected part {k!r}" for k in got if k not in want]
        problems += [
            f"part {k!r} is {got[k][1]}{list(got[k][0])}, expected {want[k][1]}{list(want[k][0])}"
            for k in want if k in got and got[k] != want[k]
        ]  # fmt: skip
        if problems:
            raise ValueError(
                f"{self.name}: this Encoded does not match the format's layout for shape {tuple(shape)} "
                f"and its options: {'; '.join(problems)} (was it modified after encode?)"
            )
        enc._layout_sig = sig

    def expected_parts(self, shape: tuple[int, ...], options: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], Any]]:
        """``{part: (shape, dtype)}`` that ``encode`` produces for an input of ``shape``; by default
        read from encoding ones of that shape (formats with a fixed layout override it)."""
        opts = self.options(**options)
        tmpl = self._encode(np.ones(shape, np.float32), **opts)
        return {k: (tuple(v.shape), v.dtype) for k, v in tmpl.parts.items()}

    def options(self, **options: Any) -> dict[str, Any]:
        """Defaults merged with ``options``; unknown names and bad values raise ``ValueError``."""
        unknown = set(options) - set(self.defaults)
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"{self.name}: unknown option(s) {sorted(unknown)}; valid options: {valid}"
            )
        opts = {**self.defaults, **options}
        self._validate(opts)
        return opts

    def layout(self, **options: Any) -> Layout:
        """Bytes of one block as a sum of its parts, for the given (or default) options."""
        raise NotImplementedError

    def accepts_row(self, n: int, **options: Any) -> bool:
        """Whether rows of ``n`` values can be encoded with these options (no padding is done)."""
        o = self.options(**options)
        if "granularity" in o:  # element-wise families: only groups constrain the row
            return o["granularity"] != "group" or n % o["group_size"] == 0
        if "block_size" in o:
            return n % o["block_size"] == 0
        return n % self.layout(**o).block_size == 0

    @property
    def block_size(self) -> int:
        """Values per block (group) with default options."""
        return self.layout().block_size

    @property
    def bytes_per_block(self) -> int:
        return self.layout().nbytes

    @property
    def bits_per_weight(self) -> float:
        """Nominal bits per value with default options (per-row/tensor overhead excluded)."""
        return self.layout().bits_per_weight

    def to_bytes(self, enc: Encoded) -> bytes:
        raise TypeError(f"{self.name} has no GGML byte layout; to_bytes() is for formats with a GGML type ({_gguf_names()})")

    def from_bytes(self, raw: Any, shape: tuple[int, ...]) -> Encoded:
        """GGML block bytes -> :class:`Encoded`: only the formats with a GGML type (the GGUF family
        and MXFP4) have a byte layout; the others keep their parts as named arrays
        (``Encoded.parts``)."""
        raise TypeError(
            f"{self.name} has no byte layout to read; from_bytes() is for formats with a GGML type ({_gguf_names()}); "
            f"other formats store named arrays in Encoded.parts"
        )

    def __repr__(self) -> str:
        return f"<format {self.name}: {self.description}>"

    # -- to implement ---------------------------------------------------------------------------
    def _validate(self, opts: dict[str, Any]) -> None:
        """Raise ``ValueError`` for bad option values (called with defaults merged in)."""

    def _encode(self, x: np.ndarray, **opts: Any) -> Encoded:
        raise NotImplementedError

    def _decode(self, enc: Encoded) -> np.ndarray:
        raise NotImplementedError


_REGISTRY: dict[str, Format] = {}
#: the order in which :func:`names` lists the families (the order of the lessons)
FAMILIES = ("integer", "float", "codebook", "microscaling", "gguf")


def register(fmt: Format) -> Format:
    """Add a format instance to the registry (names are unique)."""
    if fmt.name in _REGISTRY:
        raise ValueError(f"format {fmt.name!r} is already registered")
    _REGISTRY[fmt.name] = fmt
    return fmt


def _gguf_names() -> str:
    """The formats with GGML's byte layout (those that implement ``from_bytes``)."""
    return ", ".join(n for n in names() if type(_REGISTRY[n]).from_bytes is not Format.from_bytes)


def names() -> list[str]:
    """Every registered format name: families in registration order; GGML types by type id
    (Q4_0 ... Q8_0, the K-quants Q2_K ... Q6_K, IQ4, TQ), as llama.cpp lists them."""
    families = list(dict.fromkeys([*FAMILIES, *(f.family for f in _REGISTRY.values())]))
    order = {n: i for i, n in enumerate(_REGISTRY)}

    def key(n: str) -> tuple[int, int]:
        f = _REGISTRY[n]
        return families.index(f.family), getattr(f, "ggml_type", 0) if f.family == "gguf" else order[n]

    return sorted(_REGISTRY, key=key)


def get(name: str | Format) -> Format:
    """The format called ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    if isinstance(name, Format):
        return name
    if not isinstance(name, str):
        raise TypeError(f"format name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown format {name!r}; valid formats: {', '.join(names())}")
    return _REGISTRY[key]


# -- small helpers shared by the families ----------------------------------------------------------
def rows(x: np.ndarray) -> np.ndarray:
    """View ``x`` as 2-D (rows, row_length); a 0-d array becomes one row of one value."""
    if x.ndim == 0:
        return x.reshape(1, 1)
    return x.reshape(int(np.prod(x.shape[:-1], dtype=np.int64)), x.shape[-1])


def check_blocks(name: str, x: np.ndarray, block: int) -> None:
    """Rows must be whole blocks: GGML and microscaling formats never pad silently."""
    n = x.shape[-1] if x.ndim else 1
    if n % block:
        raise ValueError(
            f"{name}: row length {n} (last axis of shape {tuple(x.shape)}) is not a multiple of "
            f"the block size {block}; pad or reshape the tensor, or pick a format with smaller blocks"
        )


def check_finite(name: str, x: np.ndarray) -> None:
    """Scaled formats cannot store NaN/Inf (one of them would poison a whole block's scale):
    raise a ``ValueError`` that says how many and where the first one is."""
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name}: input has {int(bad.sum())} non-finite value(s) (NaN/Inf), first at index "
            f"{first}: {x[first]}; this format stores a scale per block and cannot represent them"
        )
