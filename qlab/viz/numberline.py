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
    """An ipywidgets panel: pick a format, see its facts, its number line (linear and log) and its precision."""
    import ipywidgets as w
    import matplotlib.pyplot as plt

    dd = w.Dropdown(options=[n for n in FLOAT_FORMATS if n not in ("fp32",)], value=default, description="format")
    text = w.HTML()
    out = w.Output()

    def redraw(*_):
        s = numberline_state(dd.value)
        text.value = f"<b>{facts_line(s['facts'])}</b>"
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 3, figsize=(12, 2.6))
            v = s["values"]
            small = v[np.abs(v) <= min(8.0, float(np.abs(v).max()))]
            axes[0].eventplot(small, linewidths=0.6)
            axes[0].set_yticks([])
            axes[0].set_title(f"values in [-{min(8.0, float(np.abs(v).max())):g}, +...] (linear)", fontsize=9)
            plot_numberline(axes[1], v, dd.value)
            plot_precision(axes[2], {dd.value: s})
            fig.tight_layout()
            plt.show()

    dd.observe(redraw, "value")
    redraw()
    return w.VBox([dd, text, out])
