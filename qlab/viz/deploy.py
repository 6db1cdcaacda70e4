"""Deployment lesson (12): the cached backend tables of ``scripts/backend_tables.py``, the bytes of
a ``MatMulNBits`` layer, and a size/accuracy picker over the table rows.

:func:`matmul_nbits_bytes` and :func:`deploy_state` are pure and unit-tested (the byte count
against the initializers ONNX Runtime's own quantizer writes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..core.report import format_table

CACHE = "backend_tables"
ROW_KEYS = ("backend", "scheme", "disk_bytes", "weight_bytes", "latency_ms", "latency_ratio")


def matmul_nbits_bytes(n: int, k: int, bits: int = 4, block_size: int = 32, symmetric: bool = False,
                       scale_bytes: int = 4) -> dict[str, int]:
    """Bytes of one ``MatMulNBits`` node for a weight with ``n`` outputs and ``k`` inputs: packed codes
    ``B`` ``(n, blocks, block_size * bits / 8)``, one float scale per block, and (unless ``symmetric``)
    the ``bits``-bit zero-points packed per row, each row padded to whole bytes."""
    blocks = math.ceil(k / block_size)
    codes = n * blocks * block_size * bits // 8
    scales = n * blocks * scale_bytes
    zeros = 0 if symmetric else n * math.ceil(blocks * bits / 8)
    return {"codes": codes, "scales": scales, "zero_points": zeros, "total": codes + scales + zeros,
            "fp32": 4 * n * k}


def backend_tables() -> dict[str, Any]:
    """The committed cache (``data/cache/backend_tables.json``): ``rows`` maps a model name to its
    table (``metrics``, ``batch_size``, ``rows``); every row is checked for the expected keys."""
    from .. import cache

    payload = cache.load(CACHE)
    for model, t in payload["rows"].items():
        for r in t["rows"]:
            missing = [c for c in (*ROW_KEYS, *t["metrics"]) if c not in r]
            if missing:
                raise ValueError(f"cache {CACHE!r}, {model}: a row lacks {missing}; rerun {payload.get('script')}")
    return payload


def format_rows(rows: Sequence[dict[str, Any]], metrics: Sequence[str], latency: bool = False) -> str:
    """A backend table as text (:func:`qlab.core.report.format_table`): disk and memory MB, the
    accuracy metrics, optionally latency (ms per batch and the ratio to the float model)."""
    cols: list[tuple[str, str, str | None]] = [("backend", "backend", None), ("scheme", "scheme", None),
                                               ("disk_mb", "disk MB", ".2f"), ("weight_mb", "mem MB", ".2f")]
    cols += [(m, m, ".4f") for m in metrics]
    if latency:
        cols += [("latency_ms", "ms/batch", ".2f"), ("latency_ratio", "x float", ".2f")]
    return format_table([r | {"disk_mb": r["disk_bytes"] / 1e6, "weight_mb": r["weight_bytes"] / 1e6} for r in rows], cols)


def deploy_state(rows: Sequence[dict[str, Any]], metric: str, max_mb: float, min_metric: float,
                 higher_is_better: bool = True) -> dict[str, Any]:
    """The rows that fit ``max_mb`` on disk and reach ``min_metric``; the smallest and the most
    accurate of them (``None`` when nothing qualifies)."""
    ok = [r for r in rows if r["disk_bytes"] / 1e6 <= max_mb
          and (r[metric] >= min_metric if higher_is_better else r[metric] <= min_metric)]
    best = (max if higher_is_better else min)(ok, key=lambda r: r[metric]) if ok else None
    return {"candidates": ok, "smallest": min(ok, key=lambda r: r["disk_bytes"]) if ok else None,
            "best": best, "n_rows": len(rows)}


#: bar colours per backend, as :func:`qlab.backends.compare.plot_backends` draws them
COLORS = {"torch": "0.55", "torch_native": "C0", "onnxruntime": "C1", "bitsandbytes": "C2", "openvino": "C4"}


def deploy_panel(table: dict[str, Any]):  # pragma: no cover - widgets
    """An ipywidgets panel over a cached table: a disk-size budget and an accuracy floor pick the rows
    that qualify. The bar charts of :func:`qlab.backends.compare.plot_backends` (disk MB, the first
    metric, latency ratio) are drawn once for every row on a :class:`~qlab.viz.live.LiveFigure`; a move
    fades the rows that do not qualify and moves the two limits (dashed red lines), redrawing only
    those artists over the cached axes and labels (:meth:`~qlab.viz.live.LiveFigure.animate`)."""
    import ipywidgets as w

    from .live import LiveFigure

    rows, metric = table["rows"], table["metrics"][0]
    sizes = [r["disk_bytes"] / 1e6 for r in rows]
    vals = [r[metric] for r in rows]
    mb = w.FloatSlider(value=max(sizes), min=min(sizes), max=max(sizes), step=0.01, description="max MB")
    floor = w.FloatSlider(value=min(vals), min=min(vals), max=max(vals), step=0.001, readout_format=".3f",
                          description=f"min {metric}")
    text = w.HTML()
    keys = ["disk_bytes", metric, "latency_ratio"]
    live = LiveFigure(1, 3, figsize=(4.2 * 3, 0.38 * len(rows) + 1.4), sharey=True)
    bars, over, labels = [], [], [f"{r['backend']}: {r['scheme']}" for r in rows]
    for ax, key in zip(live.axes, keys, strict=True):
        v = [float(r[key]) / (1e6 if key.endswith("bytes") else 1) for r in rows]
        bars.append(ax.barh(range(len(rows)), v, color=[COLORS.get(r["backend"], "C3") for r in rows]))
        if key == "latency_ratio":
            over.append(ax.axvline(1.0, color="k", lw=0.8, ls="--"))
            ax.set_xscale("log" if max(v) > 10 * min(v) > 0 else "linear")
        elif not key.endswith("bytes"):
            lo, hi = min(v), max(v)
            ax.set_xlim(max(0.0, lo - 0.25 * (hi - lo) - 0.005), hi + 0.05 * (hi - lo) + 0.001)
        ax.set_xlabel({"disk_bytes": "MB on disk"}.get(key, key))
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    live.axes[0].set_yticks(range(len(rows)), labels)
    limits = [ax.axvline(0.0, color="C3", lw=1.2, ls="--") for ax in live.axes[:2]]
    live.fig.suptitle("rows within both limits (faded: outside them; red dashes: the limits)")
    live.animate(*[p for bc in bars for p in bc.patches], *over, *limits)  # bars move; lines stay on top

    def redraw(*_):
        s = deploy_state(rows, metric, mb.value, floor.value)
        if s["smallest"] is None:
            text.value = "no backend fits both limits"
        else:
            text.value = (f"{len(s['candidates'])} of {s['n_rows']} rows qualify; smallest: "
                          f"<b>{s['smallest']['backend']}: {s['smallest']['scheme']}</b>; most accurate: "
                          f"<b>{s['best']['backend']}: {s['best']['scheme']}</b>")
        ok = {id(r) for r in s["candidates"]}
        for i, r in enumerate(rows):
            alpha = 1.0 if id(r) in ok else 0.15
            for bc in bars:
                bc.patches[i].set_alpha(alpha)
        limits[0].set_xdata([mb.value, mb.value])
        limits[1].set_xdata([floor.value, floor.value])
        live.refresh()

    mb.observe(redraw, "value")
    floor.observe(redraw, "value")
    live.settle()
    redraw()
    return w.VBox([w.HBox([mb, floor]), text, live.widget])


__all__ = ["matmul_nbits_bytes", "backend_tables", "format_rows", "deploy_state", "deploy_panel"]
