"""Drive an ipywidgets panel without a kernel (the panel tests): find its controls, readouts and picture by
description or by widget class, move a control."""

from __future__ import annotations

from typing import Any


def walk(widget: Any) -> list[Any]:
    import ipywidgets as w

    if isinstance(widget, w.Box):
        return [d for c in widget.children for d in walk(c)]
    return [widget]


def control(panel: Any, description: str) -> Any:
    found = [c for c in walk(panel) if getattr(c, "description", None) == description]
    assert len(found) == 1, f"panel has {len(found)} controls named {description!r}"
    return found[0]


def text(panel: Any) -> str:
    import ipywidgets as w

    return "\n".join(c.value for c in walk(panel) if isinstance(c, w.HTML))


def png(panel: Any) -> bytes:
    import ipywidgets as w

    imgs = [c for c in walk(panel) if isinstance(c, w.Image)]
    assert len(imgs) == 1, f"panel has {len(imgs)} images"
    assert imgs[0].value[:8] == b"\x89PNG\r\n\x1a\n"
    return bytes(imgs[0].value)


def move(panel: Any, description: str, value: Any) -> tuple[tuple[bytes | None, str], tuple[bytes | None, str]]:
    """Set the control ``description`` to ``value``: ((png, text) before, (png, text) after)."""
    import ipywidgets as w

    has_img = any(isinstance(c, w.Image) for c in walk(panel))
    before = (png(panel) if has_img else None, text(panel))
    c = control(panel, description)
    assert c.value != value, f"{description} is already {value!r}: the move would not fire"
    c.value = value
    return before, (png(panel) if has_img else None, text(panel))


def widgets(panel: Any, kind: str) -> list[Any]:
    """Every widget of class name ``kind`` (e.g. ``"Image"``, ``"IntSlider"``) under ``panel``, depth first."""
    found = [panel] if type(panel).__name__ == kind else []
    for child in getattr(panel, "children", ()):
        found += widgets(child, kind)
    return found


def one(panel: Any, kind: str, description: str | None = None) -> Any:
    """The single widget of class ``kind`` (and ``description``, if given) under ``panel``."""
    hits = [w for w in widgets(panel, kind) if description is None or w.description == description]
    assert len(hits) == 1, f"{len(hits)} {kind} widgets named {description!r} in the panel"
    return hits[0]
