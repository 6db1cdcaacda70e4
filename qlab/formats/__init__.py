"""qlab's numeric-format library: every format a quantization course mentions, by name.

>>> import qlab
>>> fmt = qlab.formats.get("q4_0")
>>> fmt.bits_per_weight
4.5
"""

from . import codebook, gguf, integer, microscaling, minifloat  # noqa: F401  (importing registers the formats)
from .base import Encoded, Format, Layout, get, names, register

__all__ = ["Encoded", "Format", "Layout", "get", "names", "register", "roundtrip", "describe"]


def roundtrip(x, fmt: str | Format, **options):
    """``decode(encode(x, **options))`` in one call: the simulated ("fake-quantized") tensor."""
    f = get(fmt)
    return f.decode(f.encode(x, **options))


def describe(fmt: str | Format, **options) -> dict:
    """Facts about a format for tables and lessons: family, block size, bytes as a sum, bits."""
    f = get(fmt)
    lay = f.layout(**options)
    return {
        "name": f.name,
        "family": f.family,
        "description": f.description,
        "block_size": lay.block_size,
        "bytes_per_block": lay.nbytes,
        "layout": lay.formula,
        "bits_per_weight": lay.bits_per_weight,
    }
