"""The "same prompt, every format" panel: continuations side by side (see
:mod:`qlab.analysis.generation`).

Each row shows a model's greedy continuation in display units (whole characters); the first unit
where a quantized row leaves the float continuation is outlined in red and everything after it is
greyed; under every unit sits the KL divergence (nats) of that row's next-token distribution to the
float model's at that position, and the unit's background deepens with it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..analysis.generation import DEFAULT_RECIPES, Continuation, SamePrompt, display_units, same_prompt
from ..core.report import format_table

KL_FULL = 2.0  # nats: the KL at which a unit's background is fully coloured


def _unit_html(text: str, kl: float, first: bool, after: bool) -> str:
    shown = html.escape(text.replace("\n", "⏎"), quote=False)
    alpha = min(kl / KL_FULL, 1.0) * 0.55
    style = [f"background:rgba(220,50,47,{alpha:.3f})", "display:inline-block", "text-align:center",
             "margin:0 1px 2px 0", "padding:0 1px", "white-space:pre"]  # fmt: skip
    if first:
        style.append("outline:2px solid #d62728")
    if after and not first:
        style.append("color:#777")
    return (f'<span style="{";".join(style)}" title="KL {kl:.3f}">{shown}'
            f'<br><small style="color:#555;font-size:70%">{kl:.2f}</small></span>')  # fmt: skip


def row_html(row: Continuation) -> str:
    """One row's continuation as HTML spans (KL under each unit, divergence outlined)."""
    parts = []
    for text, a, b in display_units(row):
        kl = max(row.kl[a:b]) if row.kl else 0.0
        first = row.diverge is not None and a <= row.diverge < b
        after = row.diverge is not None and a > row.diverge
        parts.append(_unit_html(text, kl, first, after))
    return "".join(parts)


def continuation_html(result: SamePrompt) -> str:
    """The whole panel as an HTML table: one row per model, the prompt above."""
    head = (f'<div style="font-family:sans-serif"><b>prompt</b> ({result.prompt_tokens} tokens): '
            f"<code>{html.escape(result.prompt)}</code>, {result.n_tokens} greedy tokens per row</div>")  # fmt: skip
    rows = []
    for r in result.rows:
        where = "-" if r.label == "f32" else ("same as f32" if r.diverge is None else f"token {r.diverge}")
        rows.append(
            f'<tr><td style="text-align:left;white-space:nowrap"><b>{html.escape(r.label)}</b><br>'
            f"<small>{r.bits_per_weight:.2f} bits/w<br>mean KL {r.mean_kl:.3f}<br>diverges: {where}</small></td>"
            f'<td style="text-align:left;font-family:monospace">{row_html(r)}</td></tr>'
        )
    return head + '<table style="border-collapse:collapse">' + "".join(rows) + "</table>"


def continuation_table(result: SamePrompt, width: int = 56) -> str:
    """A plain-text summary (for printing and tests): label, bits, first divergence, mean KL, text."""
    rows = [{"model": r.label, "bits": r.bits_per_weight, "diverges": "-" if r.diverge is None else str(r.diverge),
             "kl": r.mean_kl, "text": _clip(r.text, width)} for r in result.rows]  # fmt: skip
    cols = [("model", "model", None), ("bits", "bits/w", ".2f"), ("diverges", "diverges at", None),
            ("kl", "mean KL", ".3f"), ("text", "continuation", None)]  # fmt: skip
    return format_table(rows, cols)


def _clip(text: str, width: int) -> str:
    t = text.replace("\n", "⏎")
    return t if len(t) <= width else t[: width - 1] + "…"


def tokens_per_character(tokenizer: Any, texts: Mapping[str, str]) -> list[dict[str, Any]]:
    """How many tokens the tokenizer spends per character of each text (Hangul vs Latin script)."""
    out = []
    for label, t in texts.items():
        n = len(tokenizer(t)["input_ids"])
        out.append({"text": label, "characters": len(t), "tokens": n, "tokens_per_char": n / len(t)})
    return out


def shown_rows(result: SamePrompt, chosen: Sequence[str], recipes: Sequence[str]) -> SamePrompt:
    """``result`` with only the rows to show: the float reference, the ``chosen`` formats, and any
    row whose label is not one of ``recipes`` (nothing the format picker could select)."""
    keep = [r for r in result.rows if r.label == "f32" or r.label in chosen or r.label not in recipes]
    return replace(result, rows=keep)


def generation_panel(cached: Mapping[str, SamePrompt], model_loader: Any = None,
                     recipes: Sequence[str] = DEFAULT_RECIPES) -> Any:  # fmt: skip
    """A widget: pick a cached prompt (instant), or type a new one and press *generate* (live:
    quantizes the model with each chosen recipe; ``model_loader()`` returns the model, called once).
    The format picker also filters the rows shown (instant: the HTML of rows already computed)."""
    import ipywidgets as W

    pick = W.Dropdown(options=list(cached), description="prompt")
    text = W.Text(placeholder="or type a new prompt", layout=W.Layout(width="60%"))
    chosen = W.SelectMultiple(options=list(recipes), value=tuple(recipes), description="formats", rows=len(recipes))
    go = W.Button(description="generate", disabled=model_loader is None)
    out = W.HTML()
    state: dict[str, Any] = {"shown": cached[pick.value] if cached else None}

    def show(_: Any = None) -> None:
        if state["shown"] is not None:
            out.value = continuation_html(shown_rows(state["shown"], chosen.value, recipes))

    def show_cached(_: Any = None) -> None:
        state["shown"] = cached[pick.value]
        show()

    def generate(_: Any = None) -> None:
        if not text.value.strip():
            out.value = "<i>type a prompt first</i>"
            return
        go.disabled, go.description = True, "generating…"
        try:
            if "m" not in state:
                state["m"] = model_loader()
            state["shown"] = same_prompt(state["m"], text.value, list(chosen.value), progress=False)
            show()
        except (ValueError, TypeError) as e:
            out.value = f"<b>error:</b> {html.escape(str(e))}"
        finally:
            go.disabled, go.description = False, "generate"

    pick.observe(show_cached, names="value")
    chosen.observe(show, names="value")
    go.on_click(generate)
    show()
    return W.VBox([W.HBox([pick, chosen]), W.HBox([text, go]), out])


__all__ = ["continuation_html", "continuation_table", "generation_panel", "row_html", "shown_rows", "tokens_per_character"]
