"""Block formats and llama.cpp mixes (lesson 05): bits per weight from the format layouts, and
which GGML type every tensor of a model gets under a named mix (Q4_K_M ...), with its bytes.

The bytes are computed from each format's :class:`~qlab.formats.Layout` (no encoding needed);
the tests check them against real encodes. The widget wires a mix dropdown to :func:`mix_state`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from .. import formats
from ..core.model import ModelLike
from ..quantize.recipes import as_mix, recipe_label, resolve_recipe, targets

BLOCK_FORMATS = ("mxfp8_e4m3", "mxfp6_e2m3", "mxfp4", "nvfp4", "nf4", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1",
                 "q6_k", "q5_k", "q4_k", "q3_k", "q2_k", "iq4_nl", "iq4_xs")


def block_table(names: tuple[str, ...] = BLOCK_FORMATS) -> list[dict[str, Any]]:
    """One row per format: family, values per block, bytes per block, the layout as a sum, bits per
    weight (block parts), and per-tensor extras (NVFP4's fp32 tensor scale)."""
    rows = []
    for n in names:
        d = formats.describe(n)
        lay = formats.get(n).layout()
        rows.append({**d, "per_tensor_bytes": sum(b for _, b in lay.per_tensor)})
    return rows


def tensor_bytes(fmt: str, shape: tuple[int, ...], **options: Any) -> int:
    """Stored bytes of a tensor of ``shape`` in ``fmt`` (``f32``: 4 per value), from the layout."""
    n = 1
    for s in shape:
        n *= int(s)
    if fmt in ("f32", "fp32"):
        return 4 * n
    lay = formats.get(fmt).layout(**options)
    rows = n // shape[-1] if shape else 1
    per_row = sum(b for _, b in lay.per_row)
    per_tensor = sum(b for _, b in lay.per_tensor)
    return n // lay.block_size * lay.nbytes + rows * per_row + per_tensor


def mix_rows(model: ModelLike, mix: str) -> list[dict[str, Any]]:
    """Every weight tensor of ``model`` under the llama.cpp mix ``mix`` (always the mix: ``"q2_k"``
    is llama.cpp's Q2_K file type here, see :func:`recipe_rows` for the pure format)."""
    return recipe_rows(model, as_mix(mix))


def recipe_rows(model: ModelLike, recipe: Any) -> list[dict[str, Any]]:
    """Every weight tensor of ``model`` under ``recipe`` (see :func:`qlab.quantize.recipes.resolve_recipe`:
    a bare ``"q2_k"`` is the pure format): name, GGUF category, shape, the type asked for
    (``requested``), the type written after llama.cpp's row-length fallback (``used``), why, and the bytes."""
    choice = resolve_recipe(model, recipe)
    out = []
    for t in targets(model):
        c = choice[t.name]
        out.append({"name": t.name, "category": t.category, "shape": t.shape, "params": t.numel,
                    "requested": str(c.requested), "used": str(c.used), "reason": c.reason,
                    "nbytes": tensor_bytes(str(c.used), t.shape, **c.used.options)})
    return out


def mix_state(model: ModelLike, mix: str) -> dict[str, Any]:
    """:func:`recipe_state` of the llama.cpp mix ``mix`` (``"q2_k"`` and ``"llama:q2_k"`` both mean the
    Q2_K file type here, never the pure format)."""
    return recipe_state(model, as_mix(mix))


def recipe_state(model: ModelLike, recipe: Any) -> dict[str, Any]:
    """Summary of :func:`recipe_rows`: ``label`` (:func:`~qlab.quantize.recipes.recipe_label`); ``rows``; ``by_category`` ``{category: Counter(used type)}``;
    ``requested`` and ``used`` type counts; ``fallbacks`` (tensors whose type changed);
    ``weight_bytes``, ``params``, ``bits_per_weight`` (weight tensors only); ``other_params``
    (norms, kept in f32) and ``total_bytes`` (weights + other parameters in f32)."""
    rows = recipe_rows(model, recipe)
    by_cat: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        by_cat[r["category"]][r["used"]] += 1
    params = sum(r["params"] for r in rows)
    wbytes = sum(r["nbytes"] for r in rows)
    mod = model.model if hasattr(model, "model") else model
    total_params = sum(p.numel() for p in mod.parameters())
    other = total_params - params
    return {"mix": recipe, "label": recipe_label(recipe), "rows": rows, "by_category": dict(by_cat),
            "requested": Counter(r["requested"] for r in rows), "used": Counter(r["used"] for r in rows),
            "fallbacks": sum(r["requested"] != r["used"] for r in rows), "weight_bytes": wbytes, "params": params,
            "bits_per_weight": 8.0 * wbytes / params, "other_params": other, "total_bytes": wbytes + 4 * other}


def readout(s: dict[str, Any]) -> str:
    """Text summary of a :func:`mix_state`: one line per category, then the totals."""
    lines = [f"{s['label']}: {len(s['rows'])} weight tensors, {s['fallbacks']} changed by the row-length fallback"]
    for cat, cnt in s["by_category"].items():
        lines.append(f"  {cat:<12} " + ", ".join(f"{k} x{n}" for k, n in sorted(cnt.items(), key=lambda kv: -kv[1])))
    lines.append(f"  weights {s['weight_bytes'] / 1e6:.2f} MB = {s['bits_per_weight']:.3f} bits/weight; "
                 f"with the {s['other_params']:,} other parameters in f32: {s['total_bytes'] / 1e6:.2f} MB")
    return "\n".join(lines)


def mix_panel(model: ModelLike, mixes: tuple[str, ...] = ("q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m",
                                                    "q5_k_s", "q5_k_m", "q6_k", "q8_0")):  # pragma: no cover
    """An ipywidgets panel: pick a llama.cpp mix, see which type each tensor category gets and the size
    (text only; each mix's readout computed once)."""
    import ipywidgets as w

    from .live_parts1 import Memo

    dd = w.Dropdown(options=list(mixes), value="q4_k_m", description="mix")
    text = w.HTML()
    memo = Memo()

    def redraw(*_):
        text.value = memo(dd.value, lambda: "<pre>" + readout(mix_state(model, dd.value)) + "</pre>")

    dd.observe(redraw, "value")
    redraw()
    return w.VBox([dd, text])
