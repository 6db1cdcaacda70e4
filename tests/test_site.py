"""The course website (`make site`, website/build.py): both editions build with no Sphinx warning,
every internal link resolves (LinkChecker, a real link checker, run over the built HTML), every
lesson page has its language switch and Binder link, and widget outputs show their static
snapshot (text/html) with no widget JavaScript and no script from the internet.

A tiny two-lesson site proves that the check fails on a broken link and that a link to a lesson
that does not exist fails the strict build.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _load_build():
    spec = importlib.util.spec_from_file_location("qlab_site_build", REPO / "website" / "build.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


site = _load_build()


def _lesson_names() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    assert site.build(out, NOTEBOOKS, strict=True), "sphinx-build reported warnings or failed (see stdout)"
    return out


@pytest.mark.slow
def test_every_internal_link_resolves(built: Path) -> None:
    res = site.check_links(built)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    m = re.search(r"(\d+) links in (\d+) URLs checked\. 0 warnings found\. 0 errors found\.", res.stdout)
    assert m, res.stdout[-2000:]
    # landing page, two indexes, 18 lessons in each edition, their images: hundreds of links
    assert int(m[1]) > 10 * len(_lesson_names()), res.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("edition", ["en", "ko"])
def test_lesson_pages_switch_edition_and_open_on_binder(built: Path, edition: str) -> None:
    other = "ko" if edition == "en" else "en"
    folder = "notebooks" if edition == "en" else "notebooks/ko"
    index = (built / edition / "index.html").read_text(encoding="utf-8")
    for name in _lesson_names():
        page = (built / edition / f"{name}.html").read_text(encoding="utf-8")
        assert f'href="{name}.html"' in index, f"{edition}/index.html does not link {name}"
        assert f'class="qlab-switch" href="../{other}/{name}.html"' in page, f"{edition}/{name}: no switch"
        binder = site_conf_binder().format(path=f"{folder}/{name}.ipynb")
        assert f'class="qlab-binder" href="{binder}"' in page, f"{edition}/{name}: no Binder link"
        stray = re.findall(r'href="([^"]*\.ipynb(?:#[^"]*)?)"', page.replace(binder, ""))
        assert not stray, f"{edition}/{name}: links to notebook files, not pages: {stray}"


def site_conf_binder() -> str:
    """The Binder URL of website/conf.py, the one place that names it (read, not imported: conf.py
    is Sphinx's configuration, executed by sphinx-build)."""
    m = re.search(r'^BINDER_URL = "([^"]+)"$', (REPO / "website" / "conf.py").read_text(), re.M)
    assert m, "website/conf.py has no BINDER_URL"
    return m[1]


@pytest.mark.slow
def test_widgets_show_their_static_snapshot_without_widget_javascript(built: Path) -> None:
    for name in _lesson_names():
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
        snapshots = [
            "".join(o["data"]["text/html"])
            for c in nb["cells"]
            for o in c.get("outputs", [])
            if WIDGET_VIEW in o.get("data", {})
        ]
        assert all(snapshots), f"{name}: a widget output without its text/html snapshot"
        for edition in ("en", "ko"):
            page = (built / edition / f"{name}.html").read_text(encoding="utf-8")
            for snap in snapshots:
                assert snap.strip()[:300] in page, f"{edition}/{name}: a widget snapshot is missing"
            assert WIDGET_VIEW not in page and "jupyter-widgets" not in page, f"{edition}/{name}"
            assert "require.js" not in page and "embed-amd" not in page, f"{edition}/{name}"


@pytest.mark.slow
def test_no_page_loads_anything_from_the_internet(built: Path) -> None:
    """Scripts, stylesheets, images and fonts all come from the site: it reads offline, math included."""
    pages = sorted(built.rglob("*.html"))
    assert len(pages) == 1 + 2 * (len(_lesson_names()) + 3)  # landing; lessons, index, genindex, search
    for page in pages:
        text = page.read_text(encoding="utf-8")
        remote = re.findall(r'<(?:script|img|link|iframe)\b[^>]*(?:src|href)="((?:https?:)?//[^"]*)"', text)
        assert not remote, f"{page.relative_to(built)} loads {remote}"
    for edition in ("en", "ko"):
        page = (built / edition / "16_imatrix.html").read_text(encoding="utf-8")  # the lesson with math
        assert '<script defer="defer" src="_static/mathjax/tex-chtml.js"></script>' in page
        assert (built / edition / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


def _notebook(*markdown: str) -> dict:
    cells = [
        {"cell_type": "markdown", "id": f"c{i}", "metadata": {}, "source": md}
        for i, md in enumerate(markdown)
    ]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _tiny(tmp_path: Path, link: str = "01_b.ipynb") -> Path:
    """Two lessons in both editions; lesson 00 links to ``link``."""
    src = tmp_path / "nb"
    (src / "ko").mkdir(parents=True)
    lessons = {
        "00_a": _notebook("# 00 · A", f"Next: [lesson 01]({link})."),
        "01_b": _notebook("# 01 · B", "End."),
    }
    for name, nb in lessons.items():
        (src / f"{name}.ipynb").write_text(json.dumps(nb))
        ko = copy.deepcopy(nb)
        ko["cells"][0]["source"] += " (한국어)"
        (src / "ko" / f"{name}.ipynb").write_text(json.dumps(ko))
    return src


def test_tiny_site_checks_clean_then_fails_on_a_missing_page(tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert site.build(out, _tiny(tmp_path), strict=True)
    res = site.check_links(out)
    assert res.returncode == 0, res.stdout[-3000:]
    page = (out / "en" / "00_a.html").read_text(encoding="utf-8")
    assert 'href="01_b.html"' in page  # the notebook link became a link to the page
    # break it: the Korean lesson 01 is gone, so the links to it (the Korean index, the Korean
    # lesson 00's "next", the English lesson 01's language switch) point at nothing
    (out / "ko" / "01_b.html").unlink()
    res = site.check_links(out)
    assert res.returncode == 1, res.stdout[-3000:]
    assert "ko/01_b.html" in res.stdout
    assert re.search(r"\b[1-9]\d* errors? found", res.stdout), res.stdout[-3000:]


def test_tiny_site_fails_on_an_anchor_that_does_not_exist(tmp_path: Path) -> None:
    out = tmp_path / "site"
    assert site.build(out, _tiny(tmp_path), strict=True)
    page = out / "en" / "00_a.html"
    page.write_text(page.read_text(encoding="utf-8").replace('href="01_b.html"', 'href="01_b.html#nowhere"'))
    res = site.check_links(out)
    assert res.returncode == 1 and "nowhere" in res.stdout, res.stdout[-3000:]


def test_a_link_to_a_missing_lesson_fails_the_strict_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "site"
    assert not site.build(out, _tiny(tmp_path, link="07_missing.ipynb"), strict=True)
    assert "07_missing.ipynb" in capsys.readouterr().out


def test_editions_must_hold_the_same_lessons(tmp_path: Path) -> None:
    src = _tiny(tmp_path)
    shutil.copy(src / "01_b.ipynb", src / "02_c.ipynb")
    with pytest.raises(ValueError, match=r"only English: \['02_c'\]"):
        site.build(tmp_path / "site", src)
