"""The report every quantization returns, and the one plain-text table renderer.

:func:`format_table` renders rows of dicts for reports, sweeps, backend tables and the CLI (no
third-party dependency). :class:`Report` is the base of what ``qlab.quantize_`` returns for every
config: per-layer rows (``layers``), whole-model sizes (:class:`ModelSizes`, llama.cpp's
bits-per-weight convention), ``summary()``, ``table()`` (columns named by the subclass) and
``to_dict()``.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, ClassVar


def _cell(v: Any, fmt: str | None) -> str:
    if v is None:
        return "-"
    if fmt and isinstance(v, int | float) and not isinstance(v, bool):
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return format(v, fmt)
    return str(v)


def display_width(text: str) -> int:
    """Columns ``text`` takes in a monospaced font: East Asian wide/full-width characters (Hangul,
    CJK) take two, combining marks none (Unicode UAX #11), so Korean rows line up."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str | None]]) -> str:
    """Rows of dicts as aligned text. ``columns``: (key, header, format spec or None).

    Text columns are left-aligned, numbers right-aligned.
    """
    cells = [[_cell(r.get(k), f) for k, _, f in columns] for r in rows]
    heads = [h for _, h, _ in columns]
    widths = [max([display_width(h)] + [display_width(c[i]) for c in cells]) for i, h in enumerate(heads)]
    numeric = [all(isinstance(r.get(k), int | float) or r.get(k) is None for r in rows) for k, _, _ in columns]

    def pad(v: str, w: int, right: bool) -> str:
        fill = " " * (w - display_width(v))
        return fill + v if right else v + fill

    def line(vals: Sequence[str]) -> str:
        return "  ".join(pad(v, w, n) for v, w, n in zip(vals, widths, numeric, strict=True)).rstrip()

    return "\n".join([line(heads), line(["-" * w for w in widths]), *(line(c) for c in cells)])


class ModelSizes:
    """Whole-model size arithmetic shared by the reports: ``layers`` (rows with ``params`` and
    ``nbytes``) plus ``other_params`` kept as float32 (norms, biases), llama.cpp's BPW convention."""

    layers: Sequence[Any]
    other_params: int

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.layers) + self.other_params

    @property
    def total_bytes(self) -> int:
        """Model bytes: encoded weights + float32 for every other parameter."""
        return sum(r.nbytes for r in self.layers) + 4 * self.other_params

    @property
    def fp32_bytes(self) -> int:
        return 4 * self.total_params

    @property
    def bits_per_weight(self) -> float:
        """Bits per parameter over the whole model (llama.cpp's "BPW")."""
        return 8.0 * self.total_bytes / self.total_params if self.total_params else float("nan")


class Report(ModelSizes):
    """Per-layer rows plus whole-model sizes; subclasses name the columns of :meth:`table`
    (``COLUMNS``: key, header, format) and how a layer becomes a row (:meth:`row`)."""

    COLUMNS: ClassVar[tuple[tuple[str, str, str | None], ...]] = ()
    NOUN: ClassVar[str] = "layer"
    COUNT_MORE: ClassVar[bool] = True  # a "... N more layer(s)" line when max_rows cuts the table

    def layer(self, name: str) -> Any:
        for r in self.layers:
            if r.name == name:
                return r
        raise KeyError(f"no layer {name!r} in the report; layers: {', '.join(r.name for r in self.layers)}")

    def row(self, layer: Any) -> dict[str, Any]:
        """One layer as a table row: its fields, ``shape`` as text, ``bpw`` (bits per weight)."""
        return {**asdict(layer), "shape": "x".join(map(str, layer.shape)), "bpw": layer.bits_per_weight}

    def summary(self) -> str:
        raise NotImplementedError

    def table_layers(self) -> list[Any]:
        """The layers the table shows (all of them unless a subclass says otherwise)."""
        return list(self.layers)

    def table(self, max_rows: int | None = None) -> str:
        """Per-layer table (at most ``max_rows`` rows) followed by the summary line."""
        shown = self.table_layers()
        rows = [self.row(r) for r in shown[:max_rows]]
        more = len(shown) - len(rows) if self.COUNT_MORE else 0
        tail = f"\n... {more} more {self.NOUN}(s)" if more > 0 else ""
        return format_table(rows, self.COLUMNS) + tail + "\n" + self.summary()

    def __str__(self) -> str:
        return self.summary()


__all__ = ["ModelSizes", "Report", "format_table"]
