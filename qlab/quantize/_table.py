"""A plain-text table for reports, sweeps and the CLI (no third-party dependency)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _cell(v: Any, fmt: str | None) -> str:
    if v is None:
        return "-"
    if fmt and isinstance(v, int | float) and not isinstance(v, bool):
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return format(v, fmt)
    return str(v)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str | None]]) -> str:
    """Rows of dicts as aligned text. ``columns``: (key, header, format spec or None).

    Text columns are left-aligned, numbers right-aligned.
    """
    cells = [[_cell(r.get(k), f) for k, _, f in columns] for r in rows]
    heads = [h for _, h, _ in columns]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    numeric = [all(isinstance(r.get(k), int | float) or r.get(k) is None for r in rows) for k, _, _ in columns]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(vals, widths, numeric, strict=True)).rstrip()

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
