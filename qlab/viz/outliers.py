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


def smoothquant_state(x: Any, w: Any, alpha: float) -> dict[str, Any]:
    """What the SmoothQuant panel shows for one Linear (``x``: ``(tokens, in)`` inputs, ``w``:
    ``(out, in)`` weight) at ``alpha``: per-channel ``act_absmax``/``w_absmax`` before and after
    smoothing, the factors ``s``, their ranges' max/median ratios and the W8A8 output error
    (relative MSE against the float ``X W^T``) without (``err_plain``) and with smoothing (``err_smooth``)."""
    x = torch.as_tensor(np.asarray(x, np.float32)).reshape(-1, np.shape(x)[-1])
    w = torch.as_tensor(np.asarray(w, np.float32))
    if not bool(torch.isfinite(x).all()):
        raise ValueError("activations contain NaN/Inf")
    a = x.abs().amax(0)
    s = smoothing_factors(a, w, alpha)
    xs, ws = x / s, w * s
    ref = x.double() @ w.double().T
    a_after, w_before, w_after = xs.abs().amax(0), w.abs().amax(0), ws.abs().amax(0)
    ratio = lambda v: float(v.max() / v.median())  # noqa: E731
    return {
        "alpha": alpha, "s": s.numpy(),
        "act_absmax": a.numpy(), "act_absmax_smoothed": a_after.numpy(),
        "w_absmax": w_before.numpy(), "w_absmax_smoothed": w_after.numpy(),
        "act_ratio": ratio(a), "act_ratio_smoothed": ratio(a_after),
        "w_ratio": ratio(w_before), "w_ratio_smoothed": ratio(w_after),
        "err_plain": _rel_err(w8a8(x, w), ref), "err_smooth": _rel_err(w8a8(xs, ws), ref),
    }  # fmt: skip


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
    """An ipywidgets panel: an alpha slider, the ranges before/after and the W8A8 error."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    slider = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="alpha")
    text = widgets.HTML()
    out = widgets.Output()

    def redraw(*_: Any) -> None:
        st = smoothquant_state(x, w, slider.value)
        text.value = (f"<b>W8A8 output error</b> (relative MSE): plain {st['err_plain']:.3g}, smoothed "
                      f"{st['err_smooth']:.3g} &nbsp; | &nbsp; max/median: activations {st['act_ratio']:.1f} -> "
                      f"{st['act_ratio_smoothed']:.1f}, weights {st['w_ratio']:.1f} -> {st['w_ratio_smoothed']:.1f}")
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 2, figsize=(10, 3))
            plot_ranges(axes, st)
            fig.tight_layout()
            plt.show()

    slider.observe(redraw, "value")
    redraw()
    return widgets.VBox([slider, text, out])


__all__ = ["results_table", "smoothquant_state", "int8_decomposition_state", "outlier_layers", "w8a8", "plot_ranges",
           "smoothquant_panel"]
