"""Lesson 6 panels: activation outliers, LLM.int8()'s decomposition and SmoothQuant's alpha.

The widgets only wire controls to pure functions with unit tests: :func:`smoothquant_state`
(one Linear's activation/weight ranges and its W8A8 output error at a given alpha) and
:func:`int8_decomposition_state` (a layer's LLM.int8() error with and without outlier columns).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..quantize.configs import activation_spec, weight_spec
from ..quantize.fakequant import quantizer, weight_roundtrip
from ..quantize.smoothquant import smoothing_factors


def _rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    """``||y - ref||^2 / ||ref||^2`` in float64."""
    y, ref = y.double(), ref.double()
    return float(((y - ref) ** 2).sum() / (ref**2).sum())


def w8a8(x: torch.Tensor, w: torch.Tensor, weights: str = "int8", activations: str = "int8") -> torch.Tensor:
    """``X W^T`` with qlab's static W8A8 defaults: weights per output channel (symmetric), the input
    per tensor with its own min/max range (asymmetric), as PTQ with a min-max observer does."""
    wq, _ = weight_roundtrip(w, weight_spec(weights, None, None, {}))
    lo, hi = torch.aminmax(x)
    xq = quantizer(activation_spec(activations, {}), lo.item(), hi.item())(x)
    return xq @ torch.from_numpy(wq).T


def _as_linear(x: Any, w: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(x, np.float32)).reshape(-1, np.shape(x)[-1])
    w = torch.as_tensor(np.asarray(w, np.float32))
    if not bool(torch.isfinite(x).all()):
        raise ValueError("activations contain NaN/Inf")
    return x, w


def smoothquant_ranges(x: Any, w: Any, alpha: float) -> dict[str, Any]:
    """The cheap part of :func:`smoothquant_state` (no matmul): the factors ``s`` and the per-channel
    ranges before/after smoothing with their max/median ratios (:func:`ranges_from_maxima`)."""
    x, w = _as_linear(x, w)
    return ranges_from_maxima(x.abs().amax(0), w.abs().amax(0), alpha)


def ranges_from_maxima(act_absmax: torch.Tensor, w_absmax: torch.Tensor, alpha: float) -> dict[str, Any]:
    """:func:`smoothquant_ranges` from the per-input-channel maxima ``max_t |X_tj|`` and ``max_i |W_ij|``
    alone: ``max|X_j / s_j| = max|X_j| / s_j`` and ``max|W_ij s_j| = max|W_ij| s_j`` exactly (``s > 0``, and
    rounding is monotonic), so a panel computes them once and each alpha costs a few vector operations."""
    a, w_before = act_absmax, w_absmax
    s = smoothing_factors(a, w_before[None, :], alpha)
    a_after, w_after = a / s, w_before * s
    ratio = lambda v: float(v.max() / v.median())  # noqa: E731
    return {
        "alpha": alpha, "s": s.numpy(),
        "act_absmax": a.numpy(), "act_absmax_smoothed": a_after.numpy(),
        "w_absmax": w_before.numpy(), "w_absmax_smoothed": w_after.numpy(),
        "act_ratio": ratio(a), "act_ratio_smoothed": ratio(a_after),
        "w_ratio": ratio(w_before), "w_ratio_smoothed": ratio(w_after),
    }  # fmt: skip


def smoothed_error(x: Any, w: Any, s: Any, ref: torch.Tensor | None = None) -> float:
    """W8A8 output error (relative MSE against the float ``X W^T``, or ``ref``) of the Linear smoothed by
    the factors ``s``: ``(X / s)(W * s)^T`` with :func:`w8a8` (``s`` all ones: the plain error)."""
    x, w = _as_linear(x, w)
    s = torch.as_tensor(np.asarray(s, np.float32))
    ref = x.double() @ w.double().T if ref is None else ref
    return _rel_err(w8a8(x / s, w * s), ref)


def smoothquant_state(x: Any, w: Any, alpha: float) -> dict[str, Any]:
    """What the SmoothQuant panel shows for one Linear (``x``: ``(tokens, in)`` inputs, ``w``:
    ``(out, in)`` weight) at ``alpha``: per-channel ``act_absmax``/``w_absmax`` before and after
    smoothing, the factors ``s``, their ranges' max/median ratios (:func:`smoothquant_ranges`) and the
    W8A8 output error (relative MSE against the float ``X W^T``) without (``err_plain``) and with
    smoothing (``err_smooth``)."""
    x, w = _as_linear(x, w)
    st = smoothquant_ranges(x, w, alpha)
    ref = x.double() @ w.double().T
    return {**st, "err_plain": _rel_err(w8a8(x, w), ref), "err_smooth": smoothed_error(x, w, st["s"], ref)}


def int8_decomposition_state(x: Any, w: Any, threshold: float = 6.0) -> dict[str, Any]:
    """LLM.int8() on one Linear: the outlier ``columns`` (some ``|x| >= threshold``), and the output
    error (relative MSE against float) with the decomposition and without it (vector-wise int8)."""
    from ..backends.bitsandbytes.simulate import llm_int8_linear, outlier_columns

    x = torch.as_tensor(np.asarray(x, np.float32))
    w = torch.as_tensor(np.asarray(w, np.float32))
    ref = x.double() @ w.double().T
    return {
        "threshold": threshold,
        "columns": outlier_columns(x, threshold),
        "err_llm_int8": _rel_err(llm_int8_linear(x, w, None, threshold), ref),
        "err_vectorwise": _rel_err(llm_int8_linear(x, w, None, 0.0), ref),
    }


def outlier_layers(acts: dict[str, Any], threshold: float = 6.0) -> list[dict[str, Any]]:
    """Per captured Linear input (``qlab.analysis.capture_activations``): channels with max |x| >=
    ``threshold`` (LLM.int8()'s outlier columns on those tokens) and the max/median ratio."""
    rows = []
    for name, st in acts.items():
        if name.endswith(":input"):
            cols = np.flatnonzero(st.absmax >= threshold)
            rows.append({"name": name.removesuffix(":input"), "columns": int(cols.size),
                         "absmax": float(st.absmax.max()), "ratio": float(st.absmax.max() / np.median(st.absmax))})
    return rows


CACHE = "llm_outliers"
ROW_KEYS = ("name", "activations", "alpha", "threshold", "perplexity", "seconds")


def results_table(payload: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The perplexity rows of ``scripts/llm_outliers.py``'s cache (``qlab.cache.load("llm_outliers")``),
    each with ``vs_float`` (perplexity / float perplexity); the schema is checked."""
    from .. import cache

    payload = cache.load(CACHE) if payload is None else payload
    rows = payload.get("rows", {}).get("perplexity") if isinstance(payload.get("rows"), dict) else None
    if not rows:
        raise ValueError(f"cache {CACHE!r} has no perplexity rows; rerun {payload.get('script', 'scripts/llm_outliers.py')}")
    missing = [k for k in ROW_KEYS if any(k not in r for r in rows)]
    if missing:
        raise ValueError(f"cache {CACHE!r} rows lack {missing}; rerun {payload.get('script')}")
    base = next((r["perplexity"] for r in rows if r["name"] == "float32"), None)
    if base is None:
        raise ValueError(f"cache {CACHE!r} has no float32 row")
    return [{**r, "vs_float": r["perplexity"] / base} for r in rows]


def plot_ranges(axes: Any, st: dict[str, Any]) -> None:  # pragma: no cover - drawing
    """Two panels: activation and weight per-channel max |.|, before and after smoothing."""
    for ax, key, title in ((axes[0], "act_absmax", "activation"), (axes[1], "w_absmax", "weight")):
        ax.plot(st[key], lw=0.8, label="original")
        ax.plot(st[key + "_smoothed"], lw=0.8, label=f"smoothed (alpha={st['alpha']:.2f})")
        ax.set_title(f"{title} max |.| per input channel")
        ax.set_xlabel("input channel")
        ax.legend(fontsize=8)


def smoothquant_panel(x: Any, w: Any, alpha: float = 0.5):  # pragma: no cover - interactive wiring
    """An ipywidgets panel: an alpha slider, the ranges before/after and the W8A8 error (a
    :class:`~qlab.viz.live.LiveFigure`: lines moved in place over backgrounds drawn at creation;
    a move sends the new ranges first, then the W8A8 error, each alpha's error computed once)."""
    import ipywidgets as widgets

    from .live import LiveFigure
    from .live_parts1 import Memo, nice_ceil, one_thread

    xt, wt = _as_linear(x, w)
    ref = xt.double() @ wt.double().T
    err_plain = _rel_err(w8a8(xt, wt), ref)
    amax, wmax = xt.abs().amax(0), wt.abs().amax(0)
    slider = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="alpha")
    text = widgets.HTML()
    memo = Memo()

    live = LiveFigure(1, 2, figsize=(10, 3), backgrounds=32)
    st0 = ranges_from_maxima(amax, wmax, slider.value)
    smoothed, legends = [], []
    for ax, key, title in zip(live.axes, ("act_absmax", "w_absmax"), ("activation", "weight"), strict=True):
        ax.plot(st0[key], lw=0.8, label="original")
        smoothed.append(ax.plot(st0[key + "_smoothed"], lw=0.8, label="smoothed")[0])
        ax.set_title(f"{title} max |.| per input channel")
        ax.set_xlabel("input channel")
        legends.append(ax.legend(fontsize=8))
    live.animate(*smoothed, *legends)

    def ranges(a: float) -> dict[str, Any]:
        return memo(("ranges", round(a, 6)), lambda: ranges_from_maxima(amax, wmax, a))

    def place(st: dict[str, Any]) -> None:
        for ax, ln, leg, key in zip(live.axes, smoothed, legends, ("act_absmax", "w_absmax"), strict=True):
            ln.set_ydata(st[key + "_smoothed"])
            leg.get_texts()[1].set_text(f"smoothed (alpha={st['alpha']:.2f})")
            top = nice_ceil(float(max(np.max(st[key]), np.max(st[key + "_smoothed"]))))
            ax.set_ylim(-0.05 * top, top)

    def line(st: dict[str, Any], err: str) -> str:
        return (f"<b>W8A8 output error</b> (relative MSE): plain {err_plain:.3g}, smoothed {err} &nbsp; | &nbsp; "
                f"max/median: activations {st['act_ratio']:.1f} -> {st['act_ratio_smoothed']:.1f}, "
                f"weights {st['w_ratio']:.1f} -> {st['w_ratio_smoothed']:.1f}")

    def redraw(*_: Any) -> None:
        a = slider.value
        st = ranges(a)
        place(st)
        key = ("err", round(a, 6))
        if key not in memo.store:
            text.value = line(st, "…")
        live.refresh()  # the picture goes out now; the matmuls of the error follow
        with one_thread():
            err = memo(key, lambda: smoothed_error(xt, wt, st["s"], ref))
        text.value = line(st, f"{err:.3g}")

    slider.observe(redraw, "value")
    redraw()
    live.settle()
    grid = np.round(np.arange(slider.min, slider.max + slider.step / 2, slider.step), 6)
    for a in grid:  # the ranges are vector operations; the few backgrounds (y limits rounded by nice_ceil) are drawn now
        place(ranges(float(a)))
        live.png()
    redraw()
    return widgets.VBox([slider, text, live.widget])


__all__ = ["results_table", "smoothquant_state", "smoothquant_ranges", "ranges_from_maxima", "smoothed_error",
           "int8_decomposition_state", "outlier_layers", "w8a8", "plot_ranges", "smoothquant_panel"]
