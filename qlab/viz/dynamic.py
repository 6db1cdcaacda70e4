"""Dynamic quantization lesson (08): per-tensor vs per-token activation scales on a real input.

:func:`token_state` is the pure function behind :func:`token_panel` (unit-tested);
:func:`dynamic_rows` measures the accuracy of ``DynamicConfig`` variants on a sentence encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.metrics import sqnr_from_power
from ..core.model import Loaded
from ..quantize.configs import DynamicConfig, activation_spec
from ..quantize.fakequant import dynamic_range

GRANULARITIES = ("tensor", "token")


def real_tokens(m: Loaded, batch: dict[str, torch.Tensor], layer: str) -> np.ndarray:
    """The input of ``layer`` on a tokenizer batch, padding removed: ``(tokens, features)`` float32."""
    from .ptq import layer_input

    x = layer_input(m, batch, layer)
    keep = batch["attention_mask"].numpy().astype(bool)
    return np.ascontiguousarray(x[keep])


def token_state(x: np.ndarray, bits: int = 8, granularity: str = "tensor") -> dict[str, Any]:
    """Dynamic quantization of ``x`` (rows = tokens, last axis = features) with asymmetric ``int{bits}``:
    one range for the whole tensor, or one per token (row), as ``DynamicConfig(granularity=...)`` does.

    Returns ``decoded``, per-token ``token_absmax``, ``token_scale`` (the step each token gets) and
    ``token_sqnr_db``, the overall ``sqnr_db`` / ``mse``, and ``levels_used``: the median number of
    distinct integer levels a token's values occupy.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    x = np.ascontiguousarray(x, np.float32).reshape(-1, np.shape(x)[-1])
    spec = activation_spec(f"int{bits}", {})
    y = dynamic_range(torch.from_numpy(x), spec, granularity == "token").numpy()
    qmax = 2**bits - 1
    lo = np.minimum(x.min(axis=1 if granularity == "token" else None, keepdims=True), 0)
    hi = np.maximum(x.max(axis=1 if granularity == "token" else None, keepdims=True), 0)
    step = np.broadcast_to((hi - lo) / qmax, (x.shape[0], 1))[:, 0].astype(np.float64)
    err = (y.astype(np.float64) - x) ** 2
    sig = x.astype(np.float64) ** 2
    with np.errstate(divide="ignore"):
        tok = 10 * np.log10(sig.mean(1) / np.maximum(err.mean(1), 1e-30))
    levels = [len(np.unique(np.rint(r / s))) if s > 0 else 1 for r, s in zip(y.astype(np.float64), step, strict=True)]
    return {
        "granularity": granularity, "bits": bits, "decoded": y,
        "token_absmax": np.abs(x).max(axis=1), "token_scale": step, "token_sqnr_db": tok,
        "mse": float(err.mean()), "sqnr_db": sqnr_from_power(float(sig.mean()), float(err.mean())),
        "levels_used": float(np.median(levels)),
    }  # fmt: skip


def dynamic_rows(m: Loaded, sentences: Sequence[str], variants: Sequence[tuple[str, str]] = (
        ("int8", "tensor"), ("int8", "token"), ("int4", "tensor"), ("int4", "token"))) -> list[dict[str, Any]]:
    """Embedding agreement with fp32 (``cosine_mean``, ``top10_overlap``) of ``m`` quantized with
    ``DynamicConfig(weights="int8", activations=a, granularity=g)`` for each ``(a, g)`` of ``variants``."""
    from .. import quantize_
    from ..eval import embedding_similarity

    rows = []
    for act, gran in variants:
        q = m.fresh()
        quantize_(q, DynamicConfig(weights="int8", activations=act, granularity=gran))
        r = embedding_similarity(q, sentences=list(sentences), k=10)
        rows.append({"activations": act, "granularity": gran, "cosine_mean": r["cosine_mean"],
                     "cosine_min": r["cosine_min"], "top10_overlap": r["top10_overlap"]})
    return rows


def token_panel(x: np.ndarray, bits: int = 8):  # pragma: no cover - widgets
    """An ipywidgets panel: bits slider and tensor/token toggle over a real activation ``x``;
    plots each token's step size and SQNR (a :class:`~qlab.viz.live.LiveFigure`: lines moved
    in place over the 7 backgrounds drawn at creation, each (bits, granularity) computed once)."""
    import ipywidgets as w

    from .live import LiveFigure
    from .live_parts1 import Memo, one_thread

    nbits = w.IntSlider(value=bits, min=2, max=8, description="bits")
    gran = w.ToggleButtons(options=list(GRANULARITIES), value="tensor", description="scale per")
    text = w.HTML()
    memo = Memo()
    keep = ("granularity", "bits", "token_absmax", "token_sqnr_db", "sqnr_db", "levels_used")

    def state(b: int, g: str) -> dict[str, Any]:
        return memo((b, g), lambda: {k: v for k, v in token_state(x, b, g).items() if k in keep})

    with one_thread():
        for b in range(nbits.min, nbits.max + 1):  # all 14 settings up front: ~0.5 s, then every move only draws
            for g in GRANULARITIES:
                state(b, g)
    live = LiveFigure(1, 2, figsize=(10, 3))
    ax0, ax1 = live.axes
    s0 = state(nbits.value, "tensor")
    n = np.arange(len(s0["token_absmax"]))
    ax0.plot(n, s0["token_absmax"], lw=0.8)  # does not depend on the controls
    ax0.set_title("max |x| of each token")
    ax0.set_xlabel("token")
    (mine,) = ax1.plot(n, s0["token_sqnr_db"], lw=0.8, label="per tensor")
    (other,) = ax1.plot(n, s0["token_sqnr_db"], lw=0.8, alpha=0.6, label="per token")
    ax1.set_title("SQNR of each token (dB)")
    leg = ax1.legend()
    live.animate(mine, other, leg)

    def place(s: dict[str, Any], o: dict[str, Any]) -> None:
        mine.set_ydata(s["token_sqnr_db"])
        other.set_ydata(o["token_sqnr_db"])
        for t, st in zip(leg.get_texts(), (s, o), strict=True):
            t.set_text(f"per {st['granularity']}")
        v = np.concatenate([s["token_sqnr_db"], o["token_sqnr_db"]])
        v = v[np.isfinite(v)]
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        pad = 0.05 * (hi - lo) or 1.0
        ax1.set_ylim(lo - pad, hi + pad)

    def redraw(*_):
        s = state(nbits.value, gran.value)
        o = state(nbits.value, "token" if gran.value == "tensor" else "tensor")
        text.value = (f"<b>per {s['granularity']}</b>, int{s['bits']}: SQNR {s['sqnr_db']:.2f} dB overall "
                      f"(per {o['granularity']}: {o['sqnr_db']:.2f} dB); a token uses a median of "
                      f"{s['levels_used']:.0f} of {2 ** s['bits']} levels")
        place(s, o)
        live.refresh()

    nbits.observe(redraw, "value")
    gran.observe(redraw, "value")
    redraw()
    live.settle()
    for b in range(nbits.min, nbits.max + 1):  # one background per bits (the y range of both lines)
        place(state(b, "tensor"), state(b, "token"))
        live.png()
    redraw()
    return w.VBox([w.HBox([nbits, gran]), text, live.widget])


__all__ = ["real_tokens", "token_state", "dynamic_rows", "token_panel"]
