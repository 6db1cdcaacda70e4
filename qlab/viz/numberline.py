"""Number lines of floating-point formats (lesson 04): every representable value of FP16, BF16,
FP8 (E4M3, E5M2, E3M4), FP6, FP4 and NF4, the facts that describe them (range, precision), and a
panel to browse them.

The grids are enumerated from qlab's own formats (every code decoded); the tests compare them
with ``ml_dtypes`` (all codes of ``float8_e4m3fn`` etc.) and bitsandbytes' NF4 table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import formats
from ..formats.codebook import NF4_CODE

#: the formats of lesson 04, widest first (fp32 has facts but is too large to enumerate)
FLOAT_FORMATS = ("fp32", "fp16", "bf16", "fp8_e5m2", "fp8_e4m3", "fp8_e3m4", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1", "nf4")


def _check(name: Any) -> None:
    if name not in FLOAT_FORMATS:
        raise ValueError(f"the number line shows scalar float formats; got {name!r}, valid: {', '.join(FLOAT_FORMATS)}")


def grid(name: str) -> np.ndarray:
    """Every finite representable value of ``name``, ascending (one zero). NF4: its 16 levels on [-1, 1]."""
    _check(name)
    if name == "nf4":
        return np.unique(NF4_CODE.astype(np.float32))
    if name == "fp32":
        raise ValueError("fp32 has 2**32 codes: use format_facts('fp32') instead of enumerating it")
    f = formats.get(name)
    codes = np.arange(2**f.bits, dtype=np.uint32).astype(np.uint16 if f.bits > 8 else np.uint8)
    v = f.decode_bits(codes)
    return np.unique(v[np.isfinite(v)])


def format_facts(name: str) -> dict[str, Any]:
    """Bits, exponent/mantissa bits, bias, largest value, smallest normal and subnormal, number of
    finite values, dynamic range (binades = log2(max / smallest positive)) and ``relative_step``:
    ``2**-mantissa_bits``, the gap above a normal value at the bottom of its binade relative to that
    value (the worst relative step among normal values; NF4: the largest gap / value among its levels)."""
    _check(name)
    if name == "fp32":
        fi = np.finfo(np.float32)
        e, m, bias = 8, 23, 127
        mx, mn, sub = float(fi.max), float(fi.smallest_normal), float(fi.smallest_subnormal)
        n = 2 * (254 * 2**23 + 2**23) - 1  # every finite pattern, +0/-0 once
        bits = 32
    elif name == "nf4":
        g = grid("nf4")
        pos = g[g > 0].astype(np.float64)
        return {"format": name, "bits": 4, "exponent_bits": None, "mantissa_bits": None, "bias": None,
                "max": float(g.max()), "min_normal": None, "min_subnormal": float(g[g > 0].min()),
                "n_finite": int(g.size), "binades": float(np.log2(g.max() / g[g > 0].min())),
                "relative_step": float(np.max(np.diff(pos) / pos[:-1]))}
    else:
        f = formats.get(name)
        e, m, bias, bits = f.exponent_bits, f.mantissa_bits, f.bias, f.bits
        mx, mn, sub = f.max, f.min_normal, f.min_subnormal
        n = int(grid(name).size)
    return {"format": name, "bits": bits, "exponent_bits": e, "mantissa_bits": m, "bias": bias, "max": mx,
            "min_normal": mn, "min_subnormal": sub, "n_finite": n, "binades": float(np.log2(mx / sub)),
            "relative_step": 2.0**-m}


def numberline_state(name: str) -> dict[str, Any]:
    """What the panel shows for ``name``: its facts, the positive values and the relative gap
    ``(next value - value) / value`` at each of them (the precision across the range)."""
    g = grid(name)
    pos = g[g > 0].astype(np.float64)
    gaps = np.diff(pos) / pos[:-1]
    return {"facts": format_facts(name), "values": g, "positive": pos, "relative_gap": gaps}


def plot_numberline(ax, values: np.ndarray, label: str = "", log: bool = True):
    """The positive representable values as ticks on a (log) axis."""
    pos = np.asarray(values, np.float64)
    pos = pos[pos > 0]
    ax.eventplot(pos, lineoffsets=0, linelengths=1, linewidths=0.6, color="C0")
    if log:
        ax.set_xscale("log")
    ax.set_yticks([])
    ax.set_title(f"{label}: {pos.size} positive values", fontsize=9)
    return ax


def plot_precision(ax, states: dict[str, dict[str, Any]]):
    """Relative gap between neighbours vs value, one line per format (log-log)."""
    for name, s in states.items():
        ax.step(s["positive"][:-1], s["relative_gap"], where="post", label=name, lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("value")
    ax.set_ylabel("relative gap to the next value")
    ax.legend(fontsize=7, ncol=2)
    return ax


def facts_line(f: dict[str, Any]) -> str:
    """One line of text with a format's facts."""
    layout = "codebook" if f["exponent_bits"] is None else f"E{f['exponent_bits']}M{f['mantissa_bits']} bias {f['bias']}"
    return (f"{f['format']}: {f['bits']} bits ({layout}), {f['n_finite']:,} finite values, max {f['max']:.6g}, "
            f"smallest positive {f['min_subnormal']:.3g}, {f['binades']:.1f} binades, "
            f"relative step {f['relative_step']:.3g}")


def numberline_panel(default: str = "fp8_e4m3"):  # pragma: no cover - interactive wiring
    """An ipywidgets panel: pick a format, see its facts, its number line (linear and log) and its precision
    (a :class:`~qlab.viz.live.LiveFigure` whose artists are moved to each of the nine formats once, at
    creation: a move only swaps the picture)."""
    import ipywidgets as w
    from matplotlib.ticker import NullLocator

    from .live import LiveFigure

    names = [n for n in FLOAT_FORMATS if n not in ("fp32",)]
    states = {n: numberline_state(n) for n in names}  # all nine: ~15 ms
    dd = w.Dropdown(options=names, value=default, description="format")
    text = w.HTML()
    live = LiveFigure(1, 3, figsize=(12, 2.6))
    ax0, ax1, ax2 = live.axes
    (lin,) = ax0.eventplot([0.0], linewidths=0.6)
    ax0.set_yticks([])
    (logl,) = ax1.eventplot([1.0], lineoffsets=0, linelengths=1, linewidths=0.6, color="C0")
    ax1.set_xscale("log")
    ax1.set_yticks([])
    (gap,) = ax2.step([1.0, 2.0], [1.0, 1.0], where="post", label=default, lw=1)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("value")
    ax2.set_ylabel("relative gap to the next value")
    leg = ax2.legend(fontsize=7, ncol=2)
    for ax in (ax1, ax2):  # log axes over up to 40 binades: minor ticks cost more than the rest of a draw
        ax.xaxis.set_minor_locator(NullLocator())
    ax2.yaxis.set_minor_locator(NullLocator())

    def span(lo: float, hi: float, log: bool) -> tuple[float, float]:
        if log:
            f = (hi / lo) ** 0.05 if hi > lo else 2.0
            return lo / f, hi * f
        pad = 0.05 * (hi - lo) or 1.0
        return lo - pad, hi + pad

    def thin(ax, x: np.ndarray) -> np.ndarray:
        """One tick per half pixel of ``ax`` (fp16 has 30k positive values; drawn alike, 100x faster)."""
        px = ax.transData.transform(np.column_stack([x, np.zeros_like(x)]))[:, 0]
        return x[np.unique(np.round(2 * px), return_index=True)[1]]

    def place(name: str) -> None:
        s = states[name]
        v = s["values"]
        top = min(8.0, float(np.abs(v).max()))
        small = v[np.abs(v) <= top].astype(np.float64)
        ax0.set_xlim(*span(float(small.min()), float(small.max()), False))
        lin.set_positions(thin(ax0, small))
        ax0.set_title(f"values in [-{top:g}, +...] (linear)", fontsize=9)
        pos = s["positive"]
        ax1.set_xlim(*span(float(pos.min()), float(pos.max()), True))
        logl.set_positions(thin(ax1, pos))
        ax1.set_title(f"{name}: {pos.size} positive values", fontsize=9)
        g = s["relative_gap"]
        gap.set_data(pos[:-1], g)
        ax2.set_xlim(*span(float(pos[0]), float(pos[-2]), True))
        ax2.set_ylim(*span(float(g.min()), float(g.max()), True))
        leg.get_texts()[0].set_text(name)

    place(dd.value)
    live.settle()
    pngs = {}
    for n in names:  # nine pictures, drawn now (after the layout: the thinning depends on the pixel size)
        place(n)
        pngs[n] = live.png()
    image = w.Image(value=pngs[dd.value], format="png")

    def redraw(*_):
        text.value = f"<b>{facts_line(states[dd.value]['facts'])}</b>"
        image.value = pngs[dd.value]

    dd.observe(redraw, "value")
    redraw()
    return w.VBox([dd, text, image])
