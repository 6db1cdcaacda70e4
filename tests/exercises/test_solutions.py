"""Every exercise has a reference solution that passes its checker, and the lessons' stubs fail
with a hint (what a learner sees before writing anything)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import qlab.exercises as ex

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("name", [n for n in ex.names() if not n.startswith("_")])
def test_solution_passes(name: str) -> None:
    r = ex.check_solution(name)
    assert r, str(r)


@pytest.mark.parametrize("name", [n for n in ex.names() if not n.startswith("_")])
def test_stub_fails_with_hint(name: str) -> None:
    r = ex.check(name, lambda *a, **k: None)  # the stub's body is `...`: it returns None
    assert not r and r.hint and str(r).startswith("✗")


def test_unknown_solution() -> None:
    with pytest.raises(ValueError, match="unknown exercise"):
        ex.solution("no_such_exercise")


def _cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_no_lesson_ships_a_solved_exercise() -> None:
    """An exercise cell defines a stub (`...` body), and the hidden cell after it checks the solution."""
    seen = set()
    for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = _cells(json.loads(p.read_text()))
        for i, c in enumerate(cells):
            src = "".join(c["source"])
            if "exercises.check(" in src and "def " in src:
                name = src.split('exercises.check("')[1].split('"')[0]
                assert "    ...  # replace this line with your code" in src, f"{p.name}: {name} ships solved"
                nxt = "".join(cells[i + 1]["source"])
                assert f'check_solution("{name}")' in nxt, f"{p.name}: no hidden solution cell after {name}"
                assert cells[i + 1]["metadata"].get("jupyter", {}).get("source_hidden"), p.name
                seen.add(name)
    assert len(seen) >= 15
