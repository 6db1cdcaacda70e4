"""Helpers for the panel tests: find a panel's widgets by type (ipywidgets works without a kernel)."""

from typing import Any


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
