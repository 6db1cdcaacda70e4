"""Static HTML snapshots of a lesson's widget panels, rendered from the notebook's saved widget state.

A widget output in a notebook is ``application/vnd.jupyter.widget-view+json`` (a model id) plus a
``text/plain`` fallback such as ``VBox(children=(HBox(...``, which is all a reader sees before the
kernel runs, on GitHub, or on a static site. The notebook also stores every widget's last state
(``metadata.widgets``, the ipywidgets state schema: ``model_name`` and ``state`` per model id),
including the outputs of ``Output`` widgets. :func:`snapshot_html` turns one panel's state into
plain HTML -- controls as "description: value", HTML widgets as their HTML, the plot as its PNG --
which ``scripts/widget_snapshots.py`` stores as the output's ``text/html``: front-ends with a
running kernel show the live widget, the others show this picture of the panel's first state.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

NOTE = "Static snapshot of this panel: run the notebook (JupyterLab or Binder) to move its controls."
_BOXES = {"VBoxModel": "column", "HBoxModel": "row", "BoxModel": "row", "GridBoxModel": "row"}
_CHOICE = {"DropdownModel", "ToggleButtonsModel", "RadioButtonsModel", "SelectModel",
           "SelectionSliderModel"}  # fmt: skip
_NUMBER = {"IntSliderModel", "FloatSliderModel", "FloatLogSliderModel", "BoundedIntTextModel",
           "BoundedFloatTextModel", "IntTextModel", "FloatTextModel"}  # fmt: skip


def _ref(v: Any) -> str | None:
    return v[len("IPY_MODEL_") :] if isinstance(v, str) and v.startswith("IPY_MODEL_") else None


def _label(s: Mapping[str, Any]) -> str:
    d = s.get("description") or ""
    return f"{html.escape(d)}: " if d else ""


def _number(s: Mapping[str, Any], name: str) -> str:
    v = s.get("value")
    fmt = s.get("readout_format") or ""
    fmt = fmt.rstrip("~")  # d3-format's "trim" flag has no Python equivalent
    try:
        text = format(v, fmt) if fmt else str(v)
    except (TypeError, ValueError):
        text = str(v)
    if name == "FloatLogSliderModel" and fmt == "":
        text = f"{v:.3g}"
    return text


def _output(o: Mapping[str, Any]) -> str:
    if o.get("output_type") == "stream":
        return f"<pre>{html.escape(''.join(o.get('text', '')))}</pre>"
    if o.get("output_type") == "error":
        return f"<pre>{html.escape(o.get('ename', ''))}: {html.escape(o.get('evalue', ''))}</pre>"
    d = o.get("data", {})
    if "image/png" in d:
        png = d["image/png"]
        png = "".join(png) if isinstance(png, list) else png
        return f'<img src="data:image/png;base64,{png.strip()}" style="max-width:100%">'
    if "text/html" in d:
        h = d["text/html"]
        return "".join(h) if isinstance(h, list) else h
    if "text/plain" in d:
        t = d["text/plain"]
        return f"<pre>{html.escape(''.join(t) if isinstance(t, list) else t)}</pre>"
    return ""


def _image(m: Mapping[str, Any]) -> str:
    """An ``Image`` widget: its ``value`` bytes travel as a base64 buffer beside the state
    (``buffers: [{"path": ["value"], "encoding": "base64", "data": ...}]``)."""
    fmt = m.get("state", {}).get("format") or "png"
    for b in m.get("buffers", []):
        if b.get("path") == ["value"] and b.get("encoding") == "base64" and b.get("data"):
            return f'<img src="data:image/{html.escape(fmt)};base64,{b["data"]}" style="max-width:100%">'
    return ""


def _render(state: Mapping[str, Any], mid: str, depth: int) -> str:
    if depth > 32 or mid not in state:
        return ""
    m = state[mid]
    name, s = m.get("model_name", ""), m.get("state", {})
    if name in _BOXES:
        kids = "".join(_render(state, r, depth + 1) for r in map(_ref, s.get("children", [])) if r)
        return f'<div style="display:flex;flex-direction:{_BOXES[name]};gap:8px;flex-wrap:wrap">{kids}</div>'
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<div>{_label(s)}{s.get('value', '')}</div>"
    if name == "LabelModel":
        return f"<div>{html.escape(str(s.get('value', '')))}</div>"
    if name in _NUMBER:
        return f"<div>{_label(s)}<b>{html.escape(_number(s, name))}</b></div>"
    if name in ("IntRangeSliderModel", "FloatRangeSliderModel"):
        lo, hi = s.get("value", (None, None))
        return f"<div>{_label(s)}<b>{lo} – {hi}</b></div>"
    if name in _CHOICE:
        labels, i = s.get("_options_labels", []), s.get("index")
        shown = labels[i] if isinstance(i, int) and 0 <= i < len(labels) else "—"
        return f"<div>{_label(s)}<b>{html.escape(str(shown))}</b></div>"
    if name == "SelectMultipleModel":
        labels = s.get("_options_labels", [])
        shown = ", ".join(str(labels[i]) for i in s.get("index", []) if 0 <= i < len(labels))
        return f"<div>{_label(s)}<b>{html.escape(shown)}</b></div>"
    if name in ("CheckboxModel", "ToggleButtonModel"):
        return f"<div>{'☑' if s.get('value') else '☐'} {html.escape(s.get('description') or '')}</div>"
    if name in ("TextModel", "TextareaModel"):
        v = s.get("value") or s.get("placeholder") or ""
        return f"<div>{_label(s)}<code>{html.escape(v)}</code></div>"
    if name == "ButtonModel":
        return f"<div><button disabled>{html.escape(s.get('description') or '')}</button></div>"
    if name == "ImageModel":
        return _image(m)
    if name == "OutputModel":
        return "<div>" + "".join(_output(o) for o in s.get("outputs", [])) + "</div>"
    return ""


def snapshot_html(state: Mapping[str, Any], model_id: str) -> str:
    """The panel ``model_id`` of a saved widget ``state`` (``{id: {"model_name", "state"}}``) as
    static HTML, with a note that it is a snapshot. ``KeyError`` if the id is not in the state."""
    if model_id not in state:
        raise KeyError(f"widget model {model_id!r} is not in the saved widget state ({len(state)} models)")
    body = _render(state, model_id, 0)
    return (f'<div class="qlab-widget-snapshot" style="border:1px dashed #bbb;padding:6px">{body}'
            f'<div style="color:#777;font-size:85%;margin-top:4px">{NOTE}</div></div>')  # fmt: skip


def notebook_state(nb: Mapping[str, Any]) -> dict[str, Any]:
    """The saved widget state of a notebook (``{}`` when none was saved)."""
    return dict(nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {}))


def add_snapshots(nb: dict[str, Any]) -> int:
    """Store a snapshot as ``text/html`` in every widget output whose model is in the saved state
    (in place); returns how many outputs now carry one."""
    state, n = notebook_state(nb), 0
    for c in nb.get("cells", []):
        for o in c.get("outputs", []) if c.get("cell_type") == "code" else []:
            view = o.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view and view.get("model_id") in state:
                o["data"]["text/html"] = snapshot_html(state, view["model_id"])
                n += 1
    return n


__all__ = ["NOTE", "add_snapshots", "notebook_state", "snapshot_html"]
