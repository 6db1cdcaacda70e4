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
from ..core.metrics import weight_error
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


def rotation_summary(x: Any, bits: int, rotate: bool) -> dict[str, Any]:
    """What :func:`rotation_panel` draws of :func:`rotation_state`: ``curve`` (the largest ``|x|``
    per feature over tokens), ``max_over_rms`` and ``sqnr_db``."""
    s = rotation_state(x, bits, rotate)
    return {"curve": np.abs(s["values"]).max(0), "max_over_rms": s["max_over_rms"], "sqnr_db": s["sqnr_db"]}


def rotation_panel(acts: dict[str, Any]):  # pragma: no cover - interactive wiring
    """Pick a layer's input activations and bits; see |x| before/after the Hadamard and the SQNR.

    Every (layer, bits, rotation) is summarised once when the panel is made (:func:`rotation_summary`;
    one Hadamard product per layer) and a move only swaps the two curves and titles of a :class:`~qlab.viz.live.LiveFigure`."""
    import ipywidgets as W

    from .live import LiveFigure

    layer = W.Dropdown(options=list(acts), description="layer")
    bits = W.Dropdown(options=[8, 6, 4, 3], value=4, description="bits")
    text = W.HTML()
    states = {}
    for n, a in acts.items():  # rotate each layer once: rotation_state(a, b, True) quantizes these values
        rotated = rotation_state(a, bits.options[0], True)["values"]
        for b in bits.options:
            states[(n, b, False)], states[(n, b, True)] = rotation_summary(a, b, False), rotation_summary(rotated, b, False)
    live = LiveFigure(1, 2, figsize=(10, 3), sharey=True)
    lines, titles = [], []
    for ax in live.axes:
        lines.append(ax.plot([0.0], [0.0], lw=0.6)[0])
        titles.append(ax.set_title(" ", fontsize=9))
        ax.set_xlabel("feature")
    live.axes[0].set_ylabel("max |x| over tokens")

    def show(name: str, b: int) -> None:
        parts = []
        for ax, line, title, rot in zip(live.axes, lines, titles, (False, True), strict=True):
            s = states[(name, b, rot)]
            n = len(s["curve"])
            line.set_data(np.arange(n), s["curve"])
            ax.set_xlim(-0.05 * (n - 1), 1.05 * (n - 1))  # matplotlib's default 5% margins
            what = f"{'Hadamard' if rot else 'plain'}: max|x|/rms {s['max_over_rms']:.1f}, SQNR {s['sqnr_db']:.1f} dB"
            title.set_text(what)
            parts.append(what)
        top = max(float(states[(name, b, r)]["curve"].max()) for r in (False, True))
        live.axes[0].set_ylim(-0.05 * top, 1.05 * top)
        text.value = f"<b>int{b}, {'; '.join(parts)}</b>"

    def draw(*_: Any) -> None:
        show(layer.value, bits.value)
        live.refresh()

    for w in (layer, bits):
        w.observe(draw, "value")
    show(*max(states, key=lambda k: float(states[k]["curve"].max()))[:2])  # the widest tick labels
    live.settle()
    draw()
    return W.VBox([W.HBox([layer, bits]), text, live.widget])


class LowrankMemo:
    """:func:`lowrank_state` for a panel: the SVD of each weight and of each quantization error
    (the costly parts, ~0.3 s each) are kept, the first ``max_rank`` singular vectors of each, so a
    rank move only rebuilds the fp16 factors and measures them; same numbers as :func:`lowrank_state`
    (the factors as :func:`qlab.quantize.lowrank.truncated_svd` rounds them, ``Q(W) + L R`` as
    :func:`qlab.quantize.lowrank.compensate` adds them)."""

    def __init__(self, weights: dict[str, Any], max_rank: int = 256):
        if not (isinstance(max_rank, int) and max_rank >= 0):
            raise ValueError(f"max_rank must be an int >= 0, got {max_rank!r}")
        self.weights, self.max_rank = weights, max_rank
        self._svd: dict[Any, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._quant: dict[tuple[str, int, bool], tuple[torch.Tensor, int, dict[str, float]]] = {}

    def _factors(self, key: Any, m: torch.Tensor, rank: int) -> tuple[torch.Tensor, int]:
        if key not in self._svd:
            U, sv, Vh = torch.linalg.svd(m.double(), full_matrices=False)
            k = min(self.max_rank, len(sv))
            self._svd[key] = (U[:, :k].clone(), sv, Vh[:k].clone())
        U, sv, Vh = self._svd[key]
        if not (isinstance(rank, int) and 0 <= rank <= min(self.max_rank, len(sv))):
            raise ValueError(f"rank must be an int in 0..{min(self.max_rank, len(sv))}, got {rank!r}")
        root = sv[:rank].sqrt()
        left = (U[:, :rank] * root).to(torch.float16).float()
        right = (root[:, None] * Vh[:rank]).to(torch.float16).float()
        return left @ right, 2 * rank * (m.shape[0] + m.shape[1])

    def state(self, layer: str, rank: int, bits: int | None, fast: bool = False) -> dict[str, Any]:
        """:func:`lowrank_state` ``(weights[layer], rank, bits)``; ``fast``: only ``sqnr_db``,
        ``mse`` and ``max_abs_err`` per entry, by :func:`qlab.core.metrics.weight_error` (float32
        differences, float64 sums: the same SQNR to ~1e-6 dB, several times quicker)."""

        def stats(y: np.ndarray) -> dict[str, float]:
            if not fast:
                return error_stats(w, y)
            sq, mse, mx = weight_error(w, y)
            return {"sqnr_db": sq, "mse": mse, "max_abs_err": mx}

        if layer not in self.weights:
            raise ValueError(f"unknown layer {layer!r}; choose one of {list(self.weights)}")
        t = torch.as_tensor(np.asarray(self.weights[layer], dtype=np.float32))
        w = t.numpy()
        out: dict[str, Any] = {"fp16_bytes": 2 * t.numel()}
        prod, nb = self._factors(layer, t, rank)
        out["lowrank"] = {"nbytes": nb, **stats(prod.numpy())}
        if bits is not None:
            if (layer, bits, fast) not in self._quant:
                spec = Spec(f"int{bits}", {"granularity": "group", "group_size": 32, "symmetric": False})
                q, qb = lowrank.quantize(t, spec)
                self._quant[(layer, bits, fast)] = (q, qb, stats(q.numpy()))
            q, qb, qs = self._quant[(layer, bits, fast)]
            out["quantized"] = {"nbytes": qb, **qs}
            prod, nb = self._factors((layer, bits), t - q, rank)
            out["both"] = {"nbytes": qb + nb, **stats((q + prod).numpy())}
        return out


def lowrank_panel(weights: dict[str, Any]):  # pragma: no cover - interactive wiring
    """Pick a weight, a rank and bits; see the bytes and SQNR of low rank, quantization and both
    (a :class:`LowrankMemo`: each SVD once, then a rank move takes two products)."""
    import html

    import ipywidgets as W

    from .live_parts1 import one_thread

    layer = W.Dropdown(options=list(weights), description="weight")
    rank = W.IntSlider(value=16, min=0, max=256, step=8, description="rank")
    bits = W.Dropdown(options=[None, 2, 3, 4, 8], value=3, description="bits")
    out = W.HTML()
    memo = LowrankMemo(weights, max_rank=rank.max)

    def draw(*_: Any) -> None:
        with one_thread():  # one SVD on one thread: 0.3 s here, 2-20x that with torch's threads contending
            text = lowrank_readout(memo.state(layer.value, rank.value, bits.value, fast=True))
        out.value = f"<pre style='margin:0'>{html.escape(text)}</pre>"

    with one_thread():  # the SVDs one move from the start (every weight; the first weight at every bits): ~1.2 s
        for name in layer.options:
            memo.state(name, rank.value, bits.value, fast=True)
        for b in bits.options:
            memo.state(layer.value, rank.value, b, fast=True)

    for w in (layer, rank, bits):
        w.observe(draw, "value")
    draw()
    return W.VBox([W.HBox([layer, rank, bits]), out])


__all__ = ["cache_table", "rotation_state", "rotation_summary", "lowrank_state", "lowrank_readout", "LowrankMemo", "rotation_panel", "lowrank_panel"]
