"""The Korean edition (notebooks/ko) cannot drift from the English lessons: every Korean notebook
is exactly what ``scripts/build_ko.py`` builds from the English notebook and its translation file
(same code cells, outputs and widget state; every markdown cell translated from the current
English text). nbval therefore runs each lesson once, on the English notebook."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _builder():
    spec = importlib.util.spec_from_file_location("build_ko", ROOT / "scripts" / "build_ko.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ko = _builder()
STEMS = [p.stem for p in ko.lessons()]


def test_every_lesson_has_a_korean_edition():
    assert len(STEMS) >= 18
    assert sorted(p.stem for p in (ROOT / "notebooks" / "ko").glob("*.ipynb")) == STEMS


def test_check_passes(capsys):
    assert ko.main(["--check"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("stem", STEMS)
def test_code_cells_identical_markdown_korean(stem):
    en = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    kr = json.loads((ROOT / "notebooks" / "ko" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    assert [c["id"] for c in en["cells"]] == [c["id"] for c in kr["cells"]]
    for a, b in zip(en["cells"], kr["cells"], strict=True):
        if a["cell_type"] == "code":
            assert a == b, f"{stem}: code cell {a['id']} differs"
        else:
            assert ko.HANGUL.search(ko.source(b)), f"{stem}: markdown cell {a['id']} is not in Korean"
    assert kr["metadata"]["language"] == "ko"


def test_a_changed_english_cell_is_reported():
    stem = STEMS[0]
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    tr = json.loads((ko.TRANSLATIONS / f"{stem}.json").read_text(encoding="utf-8"))
    assert ko.problems(stem, nb, tr) == []
    changed = copy.deepcopy(nb)
    cell = next(c for c in changed["cells"] if c["cell_type"] == "markdown")
    cell["source"] = ko.source(cell) + "\nA new English sentence."
    assert any("changed since it was translated" in e for e in ko.problems(stem, changed, tr))
    missing = dict(tr)
    missing.pop(cell["id"])
    assert any("has no translation" in e for e in ko.problems(stem, nb, missing))
    english = {k: {**v, "ko": "still English"} for k, v in tr.items()}
    assert any("no Korean text" in e for e in ko.problems(stem, nb, english))
