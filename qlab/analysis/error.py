"""Quantization error of formats side by side (the metrics themselves: :mod:`qlab.core.metrics`).

SQNR (signal-to-quantization-noise ratio) = 10 log10(sum x^2 / sum (x - x_hat)^2) in dB. For a
uniform b-bit quantizer of a full-scale signal it grows by ~6.02 dB per bit (Bennett, 1948).
"""

from __future__ import annotations

from typing import Any

from .. import formats
from ..core.metrics import error_stats, sqnr_db


def formats_with_bits(bits: int, row_length: int | None = None) -> list[str]:
    """Registered formats whose nominal bits per weight lie in ``[bits, bits + 1)``.

    With ``row_length``, only formats that can encode rows of that length with default options.
    Formats that cannot encode an ordinary signed tensor on their own are left out: ``e8m0`` (an
    unsigned power-of-two scale) and the IQ types llama.cpp quantizes only with an importance
    matrix (``requires_imatrix``: iq2_xxs, iq2_xs, iq1_s).
    """
    out = []
    for name in formats.names():
        f = formats.get(name)
        if name == "e8m0" or getattr(f, "requires_imatrix", False):
            continue
        if bits <= f.bits_per_weight < bits + 1 and (row_length is None or f.accepts_row(row_length)):
            out.append(name)
    return out


def compare_formats(x: Any, names: list[str], **options: Any) -> list[dict[str, Any]]:
    """Encode ``x`` with each format; one row per format with bytes, bits/weight and error stats.

    ``options`` go to every format that accepts them (e.g. ``granularity``), the others ignore them.
    """
    x32 = formats.base.as_float32(x)
    rows = []
    for name in names:
        f = formats.get(name)
        opts = {k: v for k, v in options.items() if k in f.defaults}
        enc = f.encode(x32, **opts)
        y = f.decode(enc)
        rows.append(
            {
                "format": name,
                "family": f.family,
                "nbytes": enc.nbytes,
                "bits_per_weight": enc.bits_per_weight,
                **error_stats(x32, y),
            }
        )
    return rows


__all__ = ["compare_formats", "error_stats", "formats_with_bits", "sqnr_db"]
