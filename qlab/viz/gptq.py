"""Lesson 10 panels: RTN vs GPTQ vs AWQ on one real SmolLM2 layer, and the cached whole-model table.

:func:`layer_errors` is the pure state function (unit-tested); :func:`layer_panel` wraps it in
ipywidgets (bits slider, group-size dropdown). :func:`methods_rows` / :func:`methods_text` read
``data/cache/llm_methods.json`` written by ``scripts/llm_methods.py``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.model import Loaded
from ..quantize import awq as A
from ..quantize import gptq as G
from ..quantize.recipes import Spec


def int_spec(bits: int, group_size: int | None, symmetric: bool = False) -> Spec:
    """The integer format the panel uses: asymmetric by default, groups or one scale per row."""
    opts = {"granularity": "group", "group_size": group_size} if group_size else {"granularity": "channel"}
    return Spec(f"int{bits}", {"symmetric": symmetric, **opts})


def capture_layer(m: Loaded, name: str = "model.layers.3.mlp.down_proj", tokens: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X (tokens, in), W (out, in))``: the inputs of Linear ``name`` on ``tokens`` tokens of
    held-out calibration text (one window of :func:`qlab.eval.calibration_text`), and its float
    weight. The model's forward stops right after the layer's input is caught."""
    from ..eval import calibration_text
    from ..quantize import blockwise as B

    ids = B.calibration_ids(m, calibration_text(max(20_000, 8 * tokens)), n_samples=1, seq_len=tokens)
    lin = m.model.get_submodule(name)
    got: list[torch.Tensor] = []

    def hook(mod: Any, a: tuple[Any, ...]) -> None:
        got.append(a[0].reshape(-1, a[0].shape[-1]).float().clone())
        raise B._Caught  # nothing after this layer is needed

    h = lin.register_forward_pre_hook(hook)
    try:
        with torch.inference_mode():
            m.model(input_ids=ids, use_cache=False)
    except B._Caught:
        pass
    finally:
        h.remove()
    return got[0], lin.weight.detach().float().clone()


def layer_errors(
    x: torch.Tensor, w: torch.Tensor, bits: int = 4, group_size: int | None = 32, n_grid: int = 10,
    x_eval: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Relative output error ``||X (W - Q)^T|| / ||X W^T||`` of RTN, AWQ (scale search, no clip)
    and GPTQ (act_order) for one layer, plus the bits per weight and AWQ's alpha.

    AWQ and GPTQ calibrate on ``x``; the errors ``rtn``/``awq``/``gptq`` are measured on
    ``x_eval`` (held-out tokens; default ``x`` itself), and ``fit`` holds the same three
    measured on the calibration tokens ``x`` (GPTQ can over-fit them when they are few)."""
    spec = int_spec(bits, group_size)
    x, w = x.float(), w.float()
    xe = x if x_eval is None else x_eval.float()
    gram = x.T @ x / len(x)

    s, alpha, _ = A.search_scale(w, gram, x.abs().mean(0), spec, n_grid)
    grid = G.int_grid(spec)
    res = G.gptq_quantize(w, gram, grid, act_order=True)
    q = {"rtn": A.roundtrip(w, spec), "awq": A.roundtrip(w * s, spec) / s, "gptq": res.weight}

    def rel(xx: torch.Tensor) -> dict[str, float]:
        ref = torch.linalg.norm(xx @ w.T)
        return {k: float(torch.linalg.norm(xx @ (w - v).T) / ref) for k, v in q.items()}

    return {
        **rel(xe),
        "fit": rel(x),
        "alpha": alpha,
        "bits_per_weight": 8 * G.encoded(res, grid).nbytes / w.numel(),
    }


def layer_panel(x: torch.Tensor, w: torch.Tensor, x_eval: torch.Tensor | None = None) -> Any:  # pragma: no cover - interactive wiring
    """ipywidgets: bits and group size -> bar chart of the three methods' relative output error
    (calibrated on ``x``, measured on ``x_eval``; see :func:`layer_errors`).

    A :class:`~qlab.viz.live.LiveFigure`: the three bars are made once and resized on each move;
    :func:`layer_errors` runs once per (bits, group) and is remembered (AWQ's search and GPTQ take
    ~0.2 s a setting): the settings one move from the start (every bits at the first group, every
    group at the first bits) are computed when the panel is made, the others on first visit."""
    import ipywidgets as W

    from .live import LiveFigure
    from .live_parts1 import Memo, one_thread

    bits = W.IntSlider(value=4, min=2, max=8, description="bits")
    group = W.Dropdown(options=[("32", 32), ("64", 64), ("per channel", None)], value=32, description="group")
    text = W.HTML()
    memo = Memo()
    names = ["rtn", "awq", "gptq"]
    live = LiveFigure(1, 1, figsize=(6, 2.5))
    ax = live.axes[0]
    bars = ax.barh(names, [0.0] * 3, color=["tab:gray", "tab:orange", "tab:blue"])
    ax.set_xlabel("relative output error ||X(W-Q)^T|| / ||XW^T||")
    title = ax.set_title(" ")

    def remember(b: int, g: int | None) -> dict[str, Any]:
        def compute() -> dict[str, Any]:
            with one_thread():  # small matrices: torch's threads only contend on a shared 2-core machine
                return layer_errors(x, w, b, g, x_eval=x_eval)

        return memo((b, g), compute)

    # the settings one move from the start: every bits at group 32, every group at 4 bits (~2 s)
    for b in range(bits.min, bits.max + 1):
        remember(b, group.value)
    for _, g in group.options:
        remember(bits.value, g)

    def draw(*_: Any) -> None:
        st = remember(bits.value, group.value)
        vals = [st[n] for n in names]
        for bar, v in zip(bars, vals, strict=True):
            bar.set_width(v)
        ax.set_xlim(0, 1.05 * max(max(vals), 1e-12))
        title.set_text(f"int{bits.value}, {st['bits_per_weight']:.2f} bits/weight, AWQ alpha={st['alpha']:.2f}")
        text.value = "<b>relative output error: " + ", ".join(f"{n} {v:.4f}" for n, v in zip(names, vals, strict=True)) + "</b>"
        live.refresh()

    bits.observe(draw, "value")
    group.observe(draw, "value")
    draw()
    live.settle()
    live.refresh()
    return W.VBox([W.HBox([bits, group]), text, live.widget])


COLUMNS = ("method", "bits", "group_size", "bits_per_weight", "perplexity", "kl", "top1", "seconds")


_METHODS = ("float", "rtn", "awq", "gptq")


def methods_rows() -> list[dict[str, Any]]:
    """Rows of ``data/cache/llm_methods.json``, sorted: float first, then group 32 before per
    channel, 4 before 3 bits, RTN / AWQ / GPTQ. A cache still being written holds only some rows;
    they are returned as they are (see :func:`versus_rtn` for what is missing)."""
    from .. import cache

    rows = cache.load("llm_methods")["rows"]
    for r in rows:
        missing = [c for c in COLUMNS if c not in r]
        if missing:
            raise ValueError(f"llm_methods cache row {r.get('method')!r} lacks {missing}; re-run scripts/llm_methods.py")
    return sorted(rows, key=lambda r: (r["method"] != "float", r["group_size"] is None, -r["bits"], _METHODS.index(r["method"])))


def versus_rtn(rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per bits x granularity (group 32, per channel) and method (AWQ, GPTQ): the method's
    perplexity and KL next to RTN's at the same setting, ``beats_ppl`` / ``beats_kl`` (strictly
    lower), or ``missing`` naming the row(s) not in the cache yet."""
    rows = methods_rows() if rows is None else rows
    by = {(r["method"], r["bits"], r["group_size"]): r for r in rows}
    out = []
    for group in (32, None):
        for bits in (4, 3):
            rtn = by.get(("rtn", bits, group))
            for method in ("awq", "gptq"):
                r = by.get((method, bits, group))
                row: dict[str, Any] = {"bits": bits, "group_size": group, "method": method}
                if r is None or rtn is None:
                    row["missing"] = [n for n, v in (("rtn", rtn), (method, r)) if v is None]
                else:
                    row.update(perplexity=r["perplexity"], rtn_perplexity=rtn["perplexity"], kl=r["kl"],
                               rtn_kl=rtn["kl"], beats_ppl=r["perplexity"] < rtn["perplexity"],
                               beats_kl=r["kl"] < rtn["kl"])  # fmt: skip
                out.append(row)
    return out


def methods_text(rows: list[dict[str, Any]] | None = None) -> str:
    """The cached table as aligned text."""
    from ..core.report import format_table

    rows = methods_rows() if rows is None else rows
    rows = [dict(r, group=("-" if r["bits"] == 32 else r["group_size"] or "channel")) for r in rows]
    cols = [("method", "method", None), ("bits", "bits", None), ("group", "group", None),
            ("bits_per_weight", "bits/w", ".3f"), ("perplexity", "PPL", ".3f"), ("kl", "KL", ".4f"),
            ("top1", "top-1", ".3f"), ("seconds", "quantize s", ".0f")]  # fmt: skip
    return format_table(rows, cols)


__all__ = ["int_spec", "capture_layer", "layer_errors", "layer_panel", "methods_rows", "versus_rtn", "methods_text"]
