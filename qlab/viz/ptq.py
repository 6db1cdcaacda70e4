"""Static PTQ lesson (07): an activation histogram, the clipping range each observer picks, and
the accuracy a whole model gets with that observer.

:func:`observer_state` (one observer on one captured activation tensor) and :func:`ptq_accuracy`
(the model quantized with that observer) are pure functions with unit tests; :func:`observer_panel`
only wires ipywidgets controls to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.metrics import sqnr_from_power
from ..core.model import Loaded
from ..core.report import format_table
from ..formats import integer
from ..quantize import observers
from ..quantize.configs import PTQConfig, activation_spec
from ..quantize.recipes import torch_module


def layer_input(m: Loaded, x: Any, layer: str) -> np.ndarray:
    """The input of module ``layer`` of ``m`` (a ``LoadedModel`` or module) on inputs ``x`` (a tensor, or a
    tokenizer dict passed as ``model(**x)``), float32."""
    from ..quantize.calibration import run

    mod = torch_module(m)
    sub = mod.get_submodule(layer)
    seen: list[torch.Tensor] = []
    handle = sub.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    was = mod.training
    try:
        mod.eval()
        with torch.inference_mode():
            run(mod, x)
    finally:
        handle.remove()
        mod.train(was)
    return seen[0].to(torch.float32).numpy()


def _observe(x: np.ndarray, observer: str, percentile: float) -> Any:
    opts = {"percentile": float(percentile)} if observer == "percentile" else {}
    obs = observers.get(observer, **opts)
    obs.observe(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    return obs


def observer_state(x: np.ndarray, observer: str, bits: int = 4, percentile: float = 99.99,
                   bins: int = 80) -> dict[str, Any]:
    """What the panel shows for ``observer`` on the activation tensor ``x`` (one batch, per tensor)
    with PTQ's activation grid: asymmetric ``int{bits}`` (``PTQConfig``'s default).

    Returns the range ``lo``/``hi`` the observer picks, the grid's ``scale``/``zero_point``, the
    fraction of values clipped (error above half a step: they fell outside the grid), the quantized tensor ``decoded`` and its ``mse`` / ``sqnr_db``
    against ``x``, and a histogram of ``x`` (``counts``, ``edges``, ``bins`` equal bins).
    """
    x = np.ascontiguousarray(x, np.float32)
    spec = activation_spec(f"int{bits}", {})
    obs = _observe(x, observer, percentile)
    lo, hi = obs.range(spec)
    scale, zp = obs.qparams(spec)
    qmin, qmax = integer.qrange(bits, False)
    s, z = np.atleast_1d(scale).astype(np.float32), np.atleast_1d(zp).astype(np.int32)
    flat = x.reshape(1, -1)
    y = integer.dequantize(integer.quantize(flat, s, z, qmin, qmax), s, z).reshape(x.shape)
    err = (y.astype(np.float64) - x) ** 2
    signal = float(np.mean(x.astype(np.float64) ** 2))
    mse = float(err.mean())
    counts, edges = np.histogram(x, bins=bins)
    return {
        "observer": obs.name, "bits": bits, "percentile": float(percentile) if obs.name == "percentile" else None,
        "lo": float(lo), "hi": float(hi), "scale": float(s[0]), "zero_point": int(z[0]),
        "clipped": float(np.mean(np.abs(y.astype(np.float64) - x) > 0.5001 * float(s[0]))),
        "decoded": y, "mse": mse, "sqnr_db": sqnr_from_power(signal, mse),
        "counts": counts, "edges": edges, "min": float(x.min()), "max": float(x.max()),
    }  # fmt: skip


def observer_table(x: np.ndarray, bits: int = 4, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """:func:`observer_state` of every observer (default :func:`qlab.quantize.observers.names`), without arrays."""
    rows = []
    for n in names or observers.names():
        s = observer_state(x, n, bits)
        rows.append({k: s[k] for k in ("observer", "lo", "hi", "scale", "zero_point", "clipped", "mse", "sqnr_db")})
    return rows


def ptq_config(observer: str, bits: int = 4, percentile: float = 99.99) -> PTQConfig:
    """``PTQConfig(int{bits} weights and activations, observer)`` as the lesson uses it."""
    opts = {"percentile": float(percentile)} if observer == "percentile" else {}
    return PTQConfig(weights=f"int{bits}", activations=f"int{bits}", observer=observer, observer_options=opts,
                     progress=False)


def ptq_accuracy(m: Loaded, calibration: Any, observer: str, bits: int = 4, percentile: float = 99.99) -> float:
    """Test accuracy of a fresh copy of ``m`` (digits-cnn) after static PTQ with ``observer``."""
    from .. import quantize_

    q = m.fresh()
    quantize_(q, ptq_config(observer, bits, percentile), calibration=calibration)
    return float(q.evaluate()["accuracy"])


def study_table(rows: Sequence[dict[str, Any]], metric: str = "accuracy") -> str:
    """A :func:`qlab.quantize.calibration.calibration_study` result as a text grid: one line per
    calibration set, one column per set size (the float model's figure first)."""
    sizes = sorted({r["size"] for r in rows if r["data"] != "float"})
    sets = list(dict.fromkeys(r["data"] for r in rows if r["data"] != "float"))
    ref = next((r[metric] for r in rows if r["data"] == "float"), None)
    title = f"{metric} (float model: {ref:.4f})" if ref is not None else metric
    grid = [{"data": name, **{f"n={r['size']}": r[metric] for r in rows if r["data"] == name}} for name in sets]
    return title + "\n" + format_table(grid, [("data", "calibration", None), *((f"n={s}", f"n={s}", ".4f") for s in sizes)])


def plot_observer_ranges(ax: Any, x: np.ndarray, rows: Sequence[dict[str, Any]], bins: int = 80,
                         title: str = "") -> None:
    """Histogram of ``x`` (log counts) with the upper end ``hi`` each observer of ``rows`` picked."""
    ax.hist(np.ravel(x), bins=bins, color="0.7", log=True)
    for i, r in enumerate(rows):
        ax.axvline(r["hi"], color=f"C{i}", lw=1.5, ls="--", label=f"{r['observer']}: {r['hi']:.3g}")
    ax.set_xlabel("activation value")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)


def observer_panel(m: Loaded, calibration: Any, x: np.ndarray, bits: int = 4):  # pragma: no cover - widgets
    """An ipywidgets panel: observer dropdown, percentile slider, bits; the histogram of ``x`` with the
    chosen range, the tensor's quantization error and the whole model's accuracy with that observer.

    A :class:`~qlab.viz.live.LiveFigure` (the histogram of ``x`` drawn once, the range moved in place);
    a move sends the new range and the tensor's readout first, then quantizes and evaluates the model;
    each setting's state and accuracy are computed once."""
    import ipywidgets as w

    from .live import LiveFigure
    from .live_parts1 import Memo, one_thread

    dropdown = w.Dropdown(options=observers.names(), value="percentile", description="observer")
    pct = w.FloatSlider(value=99.9, min=90.0, max=100.0, step=0.01, description="percentile", readout_format=".2f")
    nbits = w.IntSlider(value=bits, min=2, max=8, description="bits")
    text = w.HTML()
    memo = Memo()
    live = LiveFigure(1, 1, figsize=(8, 3))
    ax = live.axes[0]
    counts, edges = np.histogram(x, bins=80)  # observer_state's histogram: x never changes
    ax.stairs(counts, edges, fill=True, color="0.7")
    ax.set_yscale("log")
    span = ax.axvspan(0.0, 1.0, color="C0", alpha=0.12, label="kept range")
    hi_line = ax.axvline(1.0, color="C0", ls="--")
    ax.set_xlabel("activation value")
    leg = ax.legend(loc="upper right")  # fixed: "best" would be chosen without the moving range
    live.animate(span, hi_line, leg)  # the legend last, over the range

    def key() -> tuple[Any, ...]:
        p = round(pct.value, 4) if dropdown.value == "percentile" else None
        return (dropdown.value, nbits.value, p)

    def line(s: dict[str, Any], acc: str) -> str:
        return (f"<b>{s['observer']}</b>: range [{s['lo']:.4g}, {s['hi']:.4g}], scale {s['scale']:.4g}, "
                f"zero-point {s['zero_point']}, clipped {100 * s['clipped']:.3f}% of values, "
                f"SQNR {s['sqnr_db']:.2f} dB on this tensor; <b>model accuracy {acc}</b> "
                f"(W{nbits.value}A{nbits.value}, every layer with this observer)")

    def state(obs: str, b: int, p: float) -> dict[str, Any]:
        return {n: v for n, v in observer_state(x, obs, b, p).items() if n not in ("decoded", "counts", "edges")}

    def redraw(*_):
        with one_thread():
            update()

    def update() -> None:
        pct.disabled = dropdown.value != "percentile"
        k = key()
        obs, b, p = dropdown.value, nbits.value, pct.value
        s = memo(("state", *k), lambda: state(obs, b, p))
        span.set_x(s["lo"])
        span.set_width(s["hi"] - s["lo"])
        hi_line.set_xdata([s["hi"], s["hi"]])
        lo, hi = min(float(edges[0]), s["lo"]), max(float(edges[-1]), s["hi"])
        pad = 0.05 * (hi - lo)
        ax.set_xlim(lo - pad, hi + pad)
        if ("acc", *k) not in memo.store:
            text.value = line(s, "…")
        live.refresh()  # the picture goes out now; quantizing and evaluating the model follows
        text.value = line(s, f"{memo(('acc', *k), lambda: ptq_accuracy(m, calibration, obs, b, p)):.4f}")

    with one_thread():  # every observer's range at the first bits now (mse/entropy search ~0.3 s each), not on a move
        for name in dropdown.options:
            p = round(pct.value, 4) if name == "percentile" else None
            memo(("state", name, nbits.value, p), lambda name=name: state(name, nbits.value, pct.value))
    for c in (dropdown, pct, nbits):
        c.observe(redraw, "value")
    redraw()
    live.settle()
    live.refresh()
    return w.VBox([w.HBox([dropdown, pct, nbits]), text, live.widget])


__all__ = ["layer_input", "observer_state", "observer_table", "ptq_config", "ptq_accuracy", "study_table",
           "plot_observer_ranges", "observer_panel"]
