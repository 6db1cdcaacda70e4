"""How an importance matrix changes the scale of one real block (lesson 16).

For the 32-value block types with one fp16 scale ``d`` in front of each block (Q4_0, Q5_0,
IQ4_NL), llama.cpp quantizes *without* an imatrix by a fixed rule (Q4_0: ``d = max / -8``, the
value of largest magnitude maps to code 0) and *with* one by a search (``quantize_row_q4_0_impl``
-> ``make_qx_quants`` in ggml-quants.c): it tries 19 scales around ``-8/max``, keeps the one that
minimises the weighted squared error ``sum_j w_j (x_j - d q_j)^2`` and refits ``d`` by weighted
least squares for the chosen codes. The weights are

    w_j = imatrix_j * sqrt(sigma2 + x_j^2),     sigma2 = mean of x^2 over the whole row

so a column the model drives hard (large mean ``x^2`` of its input) counts more. :func:`block_choice`
encodes the row of a real weight matrix both ways with qlab's byte-exact encoders and reads the
chosen ``d`` from the block's first two bytes; :func:`layer_errors` does it for every block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import formats

__all__ = ["BLOCK_TYPES", "BlockChoice", "block_choice", "layer_errors", "llama_weights"]

#: types whose blocks are 32 values after an fp16 scale ``d`` (bytes 0-1 of every block)
BLOCK_TYPES = ("q4_0", "q5_0", "iq4_nl")
QK = 32


@dataclass(frozen=True)
class BlockChoice:
    """One block of one row, quantized without and with the importance vector."""

    fmt: str
    row: int
    block: int
    x: np.ndarray  # (32,) float32 weights
    importance: np.ndarray  # (32,) the imatrix slice
    weights: np.ndarray  # (32,) llama.cpp's per-value weights w_j
    scale_plain: float
    scale_imatrix: float
    y_plain: np.ndarray
    y_imatrix: np.ndarray

    def errors(self) -> dict[str, float]:
        """Squared errors of both encodings: weighted by llama.cpp's ``w`` (what the search
        minimises), by the importance alone, and unweighted."""
        out = {}
        for tag, y in (("plain", self.y_plain), ("imatrix", self.y_imatrix)):
            e = (self.x.astype(np.float64) - y) ** 2
            out[f"weighted_{tag}"] = float((self.weights * e).sum())
            out[f"importance_{tag}"] = float((self.importance * e).sum())
            out[f"sq_{tag}"] = float(e.sum())
        return out


def llama_weights(row: np.ndarray, importance: np.ndarray) -> np.ndarray:
    """``imatrix_j * sqrt(sigma2 + x_j^2)`` for a whole row (``quantize_row_*_impl``), float64."""
    x = row.astype(np.float64)
    return importance.astype(np.float64) * np.sqrt((x * x).mean() + x * x)


def _check(w: np.ndarray, importance: np.ndarray, fmt: str) -> None:
    if fmt not in BLOCK_TYPES:
        raise ValueError(f"fmt must be one of {BLOCK_TYPES} (32-value blocks led by an fp16 scale), got {fmt!r}")
    if w.ndim != 2 or w.shape[1] % QK:
        raise ValueError(f"weight must be (rows, cols) with cols a multiple of {QK}, got shape {w.shape}")
    if importance.shape != (w.shape[1],):
        raise ValueError(f"importance must have one value per column ({w.shape[1]}), got shape {importance.shape}")


def _encode(rows: np.ndarray, fmt: str, importance: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(scales (rows, blocks), decoded rows)`` of ``rows`` in ``fmt``."""
    f = formats.get(fmt)
    enc = f.encode(rows, imatrix=importance)
    raw = np.frombuffer(enc.to_bytes(), dtype=np.uint8).reshape(rows.shape[0], rows.shape[1] // QK, -1)
    d = raw[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)
    return d, f.decode(enc)


def block_choice(w: np.ndarray, importance: np.ndarray, row: int, block: int, fmt: str = "q4_0") -> BlockChoice:
    """Block ``block`` of row ``row`` of the weight matrix ``w`` (``(rows, cols)``, one importance
    value per column), encoded in ``fmt`` without and with the importance vector."""
    w = np.asarray(w, dtype=np.float32)
    importance = np.asarray(importance, dtype=np.float32)
    _check(w, importance, fmt)
    if not 0 <= row < w.shape[0] or not 0 <= block < w.shape[1] // QK:
        raise ValueError(f"row must be in [0, {w.shape[0]}) and block in [0, {w.shape[1] // QK}), got {row}, {block}")
    x = w[row : row + 1]
    d0, y0 = _encode(x, fmt, None)
    d1, y1 = _encode(x, fmt, importance)
    s = slice(block * QK, (block + 1) * QK)
    return BlockChoice(
        fmt, row, block, x[0, s].copy(), importance[s].copy(), llama_weights(x[0], importance)[s],
        float(d0[0, block]), float(d1[0, block]), y0[0, s], y1[0, s],
    )  # fmt: skip


def layer_errors(w: np.ndarray, importance: np.ndarray, fmt: str = "q4_0") -> dict[str, np.ndarray]:
    """Per block (``(rows, blocks)`` float64): the weighted squared error (llama.cpp's ``w``) of the
    encoding without (``plain``) and with (``imatrix``) the importance vector, and both scales."""
    w = np.asarray(w, dtype=np.float32)
    importance = np.asarray(importance, dtype=np.float32)
    _check(w, importance, fmt)
    d0, y0 = _encode(w, fmt, None)
    d1, y1 = _encode(w, fmt, importance)
    wt = np.stack([llama_weights(r, importance) for r in w])
    out = {"scale_plain": d0, "scale_imatrix": d1}
    for tag, y in (("plain", y0), ("imatrix", y1)):
        e = wt * (w.astype(np.float64) - y) ** 2
        out[tag] = e.reshape(w.shape[0], -1, QK).sum(-1)
    return out
