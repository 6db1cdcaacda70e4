"""Every lesson, both editions, in JupyterLab (what ``make lab`` opens) in headless Chromium.

For each lesson (English ``notebooks/NN_*.ipynb`` and Korean ``notebooks/ko/NN_*.ipynb``): open
it in one JupyterLab server (on a copy of ``notebooks/``; autosave off), clear the committed
outputs, *Run All Cells*, and require that every code cell ran and no output is an error
(stderr is printed, not failed); then move each widget panel's main control and require that the
panel (its readout or plot) changed, that no traceback appeared in it nor in the kernel's log,
and save a screenshot. The Korean lessons must render Hangul with a CJK font (the platform font
Chromium used, from DevTools; scripts/install_browser.sh installs Debian's ``fonts-noto-cjk``).

Screenshots and ``timings.tsv`` go to ``$QLAB_BROWSER_ARTIFACTS`` or a pytest temporary
directory; the path and a per-lesson timing table are printed at the end (run with ``-s``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import _lab
from . import _lab_page as P

RUN_TIMEOUT_S = 420  # one lesson's Run All (the slowest lessons run real models on 2 cores)
PANEL_TIMEOUT_S = 120  # a panel redraws after its control moved (some recompute a model's error)
LESSONS = sorted(p.stem for p in (_lab.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# What runs (QLAB_BROWSER_RUN): "all" runs every lesson of both editions; "en" runs every English
# lesson, and of the Korean edition (the English code cells, tests/test_ko_edition.py) only
# KO_RUN (the default: every lesson in JupyterLab, 8 minutes on 2 cores); "quick" also leaves out HEAVY. A lesson
# not run is opened with its committed outputs: no error output, Hangul font, screenshot.
KO_RUN = ("00_formats_tour", "04_float_formats", "14_glossary")  # a slider, a dropdown, a text box
HEAVY = ("06_llm_outliers", "08_dynamic_quantization", "11_extreme_low_bits", "13_capstone", "15_claims",
         "16_imatrix", "17_rotations_kv_lowrank")  # 84-126 s each on 2 busy cores
SCOPES = ("quick", "en", "all")


def _mode(edition: str, name: str) -> str:
    scope = os.environ.get("QLAB_BROWSER_RUN") or "en"
    if scope not in SCOPES:
        raise ValueError(f"QLAB_BROWSER_RUN={scope!r}: valid values are {', '.join(SCOPES)}")
    if scope == "all" or (edition == "en" and (scope == "en" or name not in HEAVY)):
        return "run"
    return "run" if edition == "ko" and name in KO_RUN else "open"


CASES = [(ed, name, _mode(ed, name)) for ed in ("en", "ko") for name in LESSONS]

pytestmark = pytest.mark.slow


@dataclass
class Lab:
    page: Any
    log: Path
    artifacts: Path
    root: Path  # the served copy of notebooks/
    timings: list[tuple[str, str, float, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    pytest.importorskip("jupyterlab", reason="jupyterlab not installed (pip install -e .)")
    exe = _lab.require_browser(pytest)
    home = tmp_path_factory.mktemp("lab-home")
    env_dir = os.environ.get("QLAB_BROWSER_ARTIFACTS")
    artifacts = Path(env_dir) if env_dir else tmp_path_factory.mktemp("browser-artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    log, t0 = artifacts / "jupyterlab.log", time.monotonic()
    with _lab.lab_server(home, log) as (url, token, root), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=_lab.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1500})
            page.set_default_timeout(PANEL_TIMEOUT_S * 1000)
            with _lab.explained(log, t0, "jupyterlab"):
                page.goto(f"{url}/lab?token={token}")
                page.wait_for_function("() => window.jupyterapp !== undefined")
                page.evaluate("async () => { await window.jupyterapp.restored; }")
            state = Lab(page, log, artifacts, root)
            yield state
        finally:
            browser.close()
            _report(state if "state" in locals() else None, artifacts, time.monotonic() - t0)


def _report(state: Lab | None, artifacts: Path, total: float) -> None:
    rows = state.timings if state else []
    lines = ["edition\tlesson\tseconds\toutcome"] + [f"{e}\t{n}\t{s:.1f}\t{o}" for e, n, s, o in rows]
    (artifacts / "timings.tsv").write_text("\n".join(lines) + "\n")
    # kept for the terminal summary (tests/browser/conftest.py): shown even when output is captured
    _lab.SUMMARY[:] = [f"{e:3} {n:28} {s:6.1f} s  {o}" for e, n, s, o in rows] + [
        f"browser lessons: {len(rows)} in {total:.0f} s (server and browser start included)",
        f"artifacts (screenshots, timings.tsv, jupyterlab.log): {artifacts}"]  # fmt: skip


def _check_lesson(lab: Lab, edition: str, name: str, mode: str, notes: list[str]) -> None:
    page, path = lab.page, f"{'ko/' if edition == 'ko' else ''}{name}.ipynb"
    page.evaluate(P.OPEN, [path, RUN_TIMEOUT_S * 1000 if mode == "run" else 0])
    res = page.evaluate(P.OUTCOME)
    notes.extend(f"stderr {s}" for s in res["stderr"])
    assert not res["errors"], f"{path}: error outputs: {res['errors']}"
    if mode == "run":
        assert not res["unexecuted"], f"{path}: cells never executed: {res['unexecuted']}"
        assert not res["widget_errors"], f"{path}: widgets failed: {res['widget_errors']}"
    panels = page.evaluate(P.PANELS, P.CONTROLS) if mode == "run" else []
    expected = _lab.committed_panels(_lab.ROOT / "notebooks" / path) if mode == "run" else 0
    assert len(panels) == expected, f"{path}: {len(panels)} panels with a control in the browser, {expected} committed"
    for i, panel in enumerate(panels):
        before = P.panel_state(page, i)
        log_at = lab.log.stat().st_size
        did = P.move(page, i, panel["kind"])
        after = P.wait_changed(page, i, before, PANEL_TIMEOUT_S)
        assert "Traceback" not in after["text"], f"{path} panel {i}: {after['text']}"
        new_log = lab.log.read_text(errors="replace")[log_at:]
        assert "Traceback" not in new_log, f"{path} panel {i} after {did}: the kernel logged\n{new_log[-3000:]}"
        notes.append(f"panel {i} ({panel['label'].strip() or panel['kind']}): {did}; now {after['text'][:50]!r}")
    if edition == "ko":
        assert page.evaluate(P.MARK_HANGUL), f"{path}: no rendered markdown with Hangul"
        used = P.fonts_for(page, "[data-qlab-hangul]")
        cjk = {f for f in used if "CJK" in f or f in _lab.korean_font_families()}
        assert cjk, f"{path}: Hangul rendered with {used}, none a Korean font (install fonts-noto-cjk)"
        notes.append(f"Hangul font: {sorted(cjk)}")
    if panels:
        page.locator('[data-qlab-panel="0"]').scroll_into_view_if_needed()
    page.screenshot(path=str(lab.artifacts / f"{edition}_{name}.png"))
    notes.append(f"{len(panels)} panel(s) moved")


def test_checks_catch_a_broken_lesson(lab: Lab) -> None:
    """The detectors themselves: an error output is reported, and a panel whose control moves
    but whose content stays put fails the wait (a notebook written here, not a lesson)."""
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
          "cells": [{**cell, "source": "import ipywidgets as w\nw.VBox([w.IntSlider(description='dead'), w.HTML('same')])"},
                    {**cell, "source": "1 / 0"}]}  # fmt: skip
    (lab.root / "zz_broken.ipynb").write_text(json.dumps(nb))
    try:
        assert lab.page.evaluate(P.OPEN, ["zz_broken.ipynb", RUN_TIMEOUT_S * 1000]) is False  # run-all saw an error
        res = lab.page.evaluate(P.OUTCOME)
        assert len(res["errors"]) == 1 and "ZeroDivisionError" in res["errors"][0], res
        panels = lab.page.evaluate(P.PANELS, P.CONTROLS)
        assert [p["kind"] for p in panels] == ["slider"], panels
        before = P.panel_state(lab.page, 0)
        assert P.move(lab.page, 0, "slider").startswith("slider 0 -> 1")
        with pytest.raises(AssertionError, match="did not change"):
            P.wait_changed(lab.page, 0, before, 5)
    finally:
        lab.page.evaluate(P.CLOSE)
        (lab.root / "zz_broken.ipynb").unlink()


@pytest.mark.parametrize(("edition", "name", "mode"), CASES, ids=[f"{e}-{n[:2]}-{m}" for e, n, m in CASES])
def test_lesson_runs_and_panels_react(lab: Lab, edition: str, name: str, mode: str) -> None:
    t0, notes, outcome = time.monotonic(), [], "FAILED"
    try:
        with _lab.explained(lab.log, t0, "jupyterlab"):
            try:
                _check_lesson(lab, edition, name, mode, notes)
            finally:
                lab.page.evaluate(P.CLOSE)  # the kernel shut down, the tab closed, unsaved
        outcome = f"ok ({mode})"
    finally:
        lab.timings.append((edition, name, time.monotonic() - t0, outcome))
        print(f"\n[{edition} {name} {mode}] {time.monotonic() - t0:.1f} s {outcome}" + "".join(f"\n  {n}" for n in notes))
