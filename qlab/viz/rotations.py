"""Lesson 17's panels: rotations against activation outliers, and low rank against bytes.

The widgets only wire controls to :func:`rotation_state` and :func:`lowrank_state`, pure
functions with unit tests (``tests/viz/test_rotations.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import formats
from ..analysis.error import error_stats
from ..quantize import lowrank
from ..quantize.recipes import Spec
from ..quantize.rotation import orthogonal


def rotation_state(x: Any, bits: int, rotate: bool) -> dict[str, Any]:
    """Activations ``x`` (tokens, features), optionally times the Hadamard ``H / sqrt(n)``, then
    per-token asymmetric ``int{bits}``: the largest ``|x| / rms`` per token (mean over tokens: how
    spiky the rows are), and the quantization SQNR, measured in the rotated basis (which the
    rotation leaves unchanged: it is orthogonal)."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"x must be (tokens, features), got shape {a.shape}")
    if bits not in (2, 3, 4, 5, 6, 8):
        raise ValueError(f"bits must be one of 2, 3, 4, 5, 6, 8, got {bits!r}")
    if rotate:
        a = (torch.from_numpy(a).double() @ orthogonal(a.shape[1])).float().numpy()
    y = formats.roundtrip(a, f"int{bits}", granularity="channel", symmetric=False)
    rms = np.sqrt((a.astype(np.float64) ** 2).mean(1)) + 1e-30
    return {"values": a, "decoded": y, "max_over_rms": float((np.abs(a).max(1) / rms).mean()), **error_stats(a, y)}


def lowrank_state(w: Any, rank: int, bits: int | None) -> dict[str, Any]:
    """A weight ``w`` (rows, cols) as rank-``rank`` SVD (fp16 factors), as ``int{bits}`` g32
    (asymmetric RTN), and as both (``Q(W) + L R``): bytes and SQNR of each, and the dense fp16 bytes."""
    t = torch.as_tensor(np.asarray(w, dtype=np.float32))
    out: dict[str, Any] = {"fp16_bytes": 2 * t.numel()}
    lr = lowrank.truncated_svd(t, rank=rank)
    out["lowrank"] = {"nbytes": lr.nbytes, **error_stats(t.numpy(), lr.product().numpy())}
    if bits is not None:
        spec = Spec(f"int{bits}", {"granularity": "group", "group_size": 32, "symmetric": False})
        q, qb = lowrank.quantize(t, spec)
        out["quantized"] = {"nbytes": qb, **error_stats(t.numpy(), q.numpy())}
        c = lowrank.compensate(t, spec, rank)
        out["both"] = {"nbytes": c.nbytes, **error_stats(t.numpy(), c.weight.numpy())}
    return out


def lowrank_readout(s: dict[str, Any]) -> str:
    lines = [f"dense fp16: {s['fp16_bytes']:,} bytes"]
    for k in ("lowrank", "quantized", "both"):
        if k in s:
            lines.append(f"{k:>9}: {s[k]['nbytes']:>9,} bytes, SQNR {s[k]['sqnr_db']:6.2f} dB")
    return "\n".join(lines)


def cache_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]], **where: Any) -> str:
    """A fixed-width text table of the cache ``rows`` matching ``where`` (key = value), one line per
    row; ``columns``: ``(key, header, format spec)``; a missing value prints as ``-``."""
    chosen = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    widths = [max(len(h), 10) for _, h, _ in columns]
    lines = ["  ".join(f"{h:>{w}}" for (_, h, _), w in zip(columns, widths, strict=True))]
    for r in chosen:
        cells = []
        for (k, _, f), w in zip(columns, widths, strict=True):
            v = r.get(k)
            cells.append(f"{'-' if v is None else format(v, f):>{w}}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def rotation_panel(acts: dict[str, Any]):  # pragma: no cover - interactive wiring
    """Pick a layer's input activations and bits; see |x| before/after the Hadamard and the SQNR."""
    import ipywidgets as W
    import matplotlib.pyplot as plt

    layer = W.Dropdown(options=list(acts), description="layer")
    bits = W.Dropdown(options=[8, 6, 4, 3], value=4, description="bits")
    out = W.Output()

    def draw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 2, figsize=(10, 3), sharey=True)
            for ax, rot in zip(axes, (False, True), strict=True):
                s = rotation_state(acts[layer.value], bits.value, rot)
                ax.plot(np.abs(s["values"]).max(0), lw=0.6)
                ax.set_title(f"{'Hadamard' if rot else 'plain'}: max|x|/rms {s['max_over_rms']:.1f}, "
                             f"SQNR {s['sqnr_db']:.1f} dB", fontsize=9)  # fmt: skip
                ax.set_xlabel("feature")
            axes[0].set_ylabel("max |x| over tokens")
            plt.show()

    for w in (layer, bits):
        w.observe(draw, "value")
    draw()
    return W.VBox([W.HBox([layer, bits]), out])


def lowrank_panel(weights: dict[str, Any]):  # pragma: no cover - interactive wiring
    """Pick a weight, a rank and bits; see the bytes and SQNR of low rank, quantization and both."""
    import ipywidgets as W

    layer = W.Dropdown(options=list(weights), description="weight")
    rank = W.IntSlider(value=16, min=0, max=256, step=8, description="rank")
    bits = W.Dropdown(options=[None, 2, 3, 4, 8], value=3, description="bits")
    out = W.Output()

    def draw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            print(lowrank_readout(lowrank_state(weights[layer.value], rank.value, bits.value)))

    for w in (layer, rank, bits):
        w.observe(draw, "value")
    draw()
    return W.VBox([W.HBox([layer, rank, bits]), out])


__all__ = ["cache_table", "rotation_state", "lowrank_state", "lowrank_readout", "rotation_panel", "lowrank_panel"]
