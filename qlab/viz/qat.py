"""QAT lesson (09): the straight-through estimator and LSQ's step-size gradient, and the cached
QAT-vs-PTQ results of ``scripts/qat_results.py``.

:func:`ste_state` is the pure function behind :func:`ste_panel`: the forward staircase of a
fake quantizer and the gradients QAT uses in its place (unit-tested against torch autograd on
qlab's LSQ quantizer). :func:`qat_results` loads the committed cache; :func:`run_qat` computes one
of its rows live.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.report import format_table

CACHE = "qat_results"
METHODS = ("ste", "lsq")
COLUMNS = ("method", "bits", "distill", "accuracy", "loss_per_epoch", "epochs", "seconds")


def ste_state(bits: int = 2, step: float = 0.5, lo: float = -3.0, hi: float = 3.0, n: int = 601) -> dict[str, Any]:
    """Forward and backward of a symmetric ``int{bits}`` fake quantizer ``round(clamp(v / s, -Q, Q)) * s``
    (``Q = 2**(bits-1) - 1``, qlab's symmetric grid) on ``n`` points of ``[lo, hi]``.

    Returns ``v``, the quantized values ``forward``, the true derivative of the staircase
    ``true_grad`` (zero almost everywhere), the straight-through gradient ``ste_grad`` (1 inside
    the clipping range, 0 outside), and LSQ's ``step_grad``, the derivative of each ``v_hat`` with
    respect to the step ``s`` (``round(v/s) - v/s`` inside, ``-Q`` / ``Q`` when clipped; before
    LSQ's gradient scale ``1 / sqrt(N * Q)``), plus ``clip`` = ``Q * s``.
    """
    if bits < 2:
        raise ValueError(f"bits must be >= 2 for a symmetric grid with a zero, got {bits}")
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    q = 2 ** (bits - 1) - 1
    v = np.linspace(lo, hi, n)
    r = v / step
    c = np.clip(r, -q, q)
    fwd = np.round(c) * step
    inside = (r >= -q) & (r <= q)  # inclusive, as torch.clamp's gradient
    step_grad = np.where(inside, np.round(c) - r, np.where(r < -q, -q, q)).astype(np.float64)
    return {"bits": bits, "step": step, "qmax": q, "clip": q * step, "v": v, "forward": fwd,
            "true_grad": np.zeros_like(v), "ste_grad": inside.astype(np.float64), "step_grad": step_grad,
            "grad_scale_note": "LSQ multiplies the summed step gradient by 1 / sqrt(N * Q)"}


def lsq_init_step(w: np.ndarray, bits: int) -> float:
    """LSQ's initial step for a tensor: ``2 * mean|w| / sqrt(Q)`` (Esser et al., 2020)."""
    q = 2 ** (bits - 1) - 1
    return float(2 * np.mean(np.abs(w)) / math.sqrt(q))


def run_qat(method: str, bits: int, distill: bool = False, epochs: int = 3, seed: int = 0) -> dict[str, Any]:
    """One row of the cache: digits-cnn fine-tuned with ``QATConfig(int{bits} weights and activations,
    method, distill)`` on its training split, test accuracy after convert."""
    from .. import quantize_
    from ..models import load
    from ..quantize import QATConfig

    m = load("digits-cnn", progress=False).fresh()
    t = time.perf_counter()
    rep = quantize_(m, QATConfig(weights=f"int{bits}", activations=f"int{bits}", method=method, distill=distill,
                                 epochs=epochs, seed=seed, progress=False))
    secs = time.perf_counter() - t
    return {"method": method, "bits": bits, "distill": distill, "accuracy": float(m.evaluate()["accuracy"]),
            "loss_per_epoch": [float(v) for v in rep.extra["loss_per_epoch"]], "epochs": epochs,
            "seconds": round(secs, 2)}


def run_ptq(bits: int, observer: str = "minmax", n: int = 256) -> dict[str, Any]:
    """The PTQ baseline row: the same W/A widths, ``n`` training images of calibration."""
    from .. import quantize_
    from ..models import load
    from ..models.digits import load_split
    from ..quantize import PTQConfig

    m = load("digits-cnn", progress=False).fresh()
    x, _ = load_split("train")
    t = time.perf_counter()
    quantize_(m, PTQConfig(weights=f"int{bits}", activations=f"int{bits}", observer=observer, progress=False),
              calibration=x[:n])
    return {"method": f"ptq ({observer})", "bits": bits, "distill": False, "accuracy": float(m.evaluate()["accuracy"]),
            "loss_per_epoch": [], "epochs": 0, "seconds": round(time.perf_counter() - t, 2)}


def qat_results() -> dict[str, Any]:
    """The committed cache (``data/cache/qat_results.json``), its rows checked for the expected columns."""
    from .. import cache

    payload = cache.load(CACHE)
    for r in payload["rows"]:
        missing = [c for c in COLUMNS if c not in r]
        if missing:
            raise ValueError(f"cache {CACHE!r}: a row lacks {missing}; regenerate it with {payload.get('script')}")
    return payload


def result_table(rows: Sequence[dict[str, Any]], float_accuracy: float | None = None) -> str:
    """Accuracy grid: one line per method (PTQ, STE, LSQ, with/without distillation), one column per width."""
    bits = sorted({r["bits"] for r in rows}, reverse=True)
    keys = list(dict.fromkeys((r["method"], r["distill"]) for r in rows))
    grid = []
    for meth, dist in keys:
        vals = {f"W{r['bits']}A{r['bits']}": r["accuracy"] for r in rows if (r["method"], r["distill"]) == (meth, dist)}
        grid.append({"method": meth + (" + distill" if dist else ""), **vals})
    if float_accuracy is not None:
        grid.append({"method": "float32", **{f"W{b}A{b}": float_accuracy for b in bits}})
    return format_table(grid, [("method", "method", None), *((f"W{b}A{b}", f"W{b}A{b}", ".4f") for b in bits)])


def pick(rows: Sequence[dict[str, Any]], method: str, bits: int, distill: bool = False) -> dict[str, Any]:
    """The cached row of ``method`` / ``bits`` / ``distill`` (``ValueError`` listing what exists)."""
    for r in rows:
        if (r["method"], r["bits"], r["distill"]) == (method, bits, distill):
            return r
    have = sorted({(r["method"], r["bits"], r["distill"]) for r in rows})
    raise ValueError(f"no cached row for {(method, bits, distill)}; cached: {have}")


def ste_panel(rows: Sequence[dict[str, Any]] | None = None):  # pragma: no cover - widgets
    """An ipywidgets panel: bits and step sliders over :func:`ste_state`, and (with ``rows``) the cached
    accuracy and training loss of the chosen method (a :class:`~qlab.viz.live.LiveFigure`: lines moved in place, the axes redrawn only when
    the bits change the gradient's range)."""
    import ipywidgets as w

    from .live import LiveFigure

    nbits = w.IntSlider(value=2, min=2, max=4, description="bits")
    step = w.FloatSlider(value=0.5, min=0.1, max=1.5, step=0.05, description="step s")
    method = w.Dropdown(options=["ste", "lsq"], value="lsq", description="method")
    distill = w.Checkbox(value=False, description="distillation")
    text = w.HTML()
    live = LiveFigure(1, 3, figsize=(11, 3))
    axes = live.axes
    s0 = ste_state(nbits.value, step.value)
    v = s0["v"]
    (fwd,) = axes[0].plot(v, s0["forward"], label="round(clamp(v/s))·s")
    axes[0].plot(v, v, ls=":", color="0.5", label="identity")
    axes[0].set_title("forward")
    axes[0].legend(fontsize=7)
    (ste,) = axes[1].plot(v, s0["ste_grad"], label="STE")
    axes[1].plot(v, s0["true_grad"], ls="--", label="true (0 a.e.)")
    axes[1].set_title("d v̂ / d v")
    axes[1].legend(fontsize=7)
    axes[1].set_ylim(-0.05, 1.05)
    (sg,) = axes[2].plot(v, s0["step_grad"], color="C2")
    live.animate(fwd, ste, sg)  # a step move only redraws these three lines
    axes[0].set_ylim(-3.9, 3.9)  # |round(clamp(v/s))·s| <= max|v| + s/2 for every setting
    axes[2].set_title("LSQ: d v̂ / d s")
    for ax in axes:
        ax.set_xlabel("v")

    def grad_ylim(q: int) -> None:
        axes[2].set_ylim(-1.05 * q - 0.05, 1.05 * q + 0.05)

    def redraw(change=None):
        s = ste_state(nbits.value, step.value)
        msg = f"int{s['bits']}: levels at multiples of s in [-{s['qmax']}s, {s['qmax']}s], clipping at ±{s['clip']:.2f}"
        if rows:
            try:
                r = pick(rows, method.value, nbits.value, distill.value)
                msg += (f"<br><b>cached QAT ({method.value}{' + distill' if distill.value else ''}, "
                        f"W{nbits.value}A{nbits.value})</b>: accuracy {r['accuracy']:.4f}, loss per epoch "
                        + ", ".join(f"{v:.3f}" for v in r["loss_per_epoch"]))
            except ValueError:
                msg += f"<br>(no cached run for W{nbits.value}A{nbits.value})"
        text.value = msg
        if change is not None and change["owner"] in (method, distill):
            return  # the cached run changed, not the curves
        fwd.set_ydata(s["forward"])
        ste.set_ydata(s["ste_grad"])
        sg.set_ydata(s["step_grad"])
        grad_ylim(s["qmax"])
        live.refresh()

    for c in (nbits, step, method, distill):
        c.observe(redraw, "value")
    redraw()
    live.settle()
    for b in range(nbits.min, nbits.max + 1):  # the three backgrounds up front: every move then blits
        grad_ylim(2 ** (b - 1) - 1)
        live.png()
    redraw()
    return w.VBox([w.HBox([nbits, step]), w.HBox([method, distill]), text, live.widget])


__all__ = ["ste_state", "lsq_init_step", "run_qat", "run_ptq", "qat_results", "result_table", "pick", "ste_panel"]
