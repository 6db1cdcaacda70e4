"""End to end in a real browser: a lesson served by Voilà on localhost, opened by headless
Chromium (Debian's ``chromium`` package, driven by Playwright through ``executable_path``; no
browser is downloaded). The test moves the bits slider of lesson 00 with the keyboard and checks
that the readout and the error-histogram image change, then saves a screenshot.

Needs the ``test`` extra (playwright, voila) and a chromium binary: ``make install`` runs
``scripts/install_browser.sh``, which installs Debian's package when running as root with apt.
Without a browser the test is skipped -- except as root with apt-get available (CI), where a
missing browser is an installation error and the test fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from . import _lab

LESSON = "notebooks/00_formats_tour.ipynb"
RENDER_TIMEOUT_S = 300  # notebook executed and widgets rendered (a cold machine: imports from disk, numba compiles)

pytestmark = pytest.mark.slow
# the panel's picture: an ipywidgets.Image (qlab.viz.live.LiveFigure), or an <img> in an Output widget
PLOT = "img.widget-image, .widget-output img"


def _voila(notebook: str) -> Callable[[int, str], list[str]]:
    def args(port: int, token: str) -> list[str]:
        return ["voila", notebook, "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1", f"--token={token}",
                "--show_tracebacks=True"]  # fmt: skip

    return args


def test_bits_slider_changes_readout_and_plot(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    pytest.importorskip("voila", reason="voila not installed (pip install -e '.[test]')")
    exe = _lab.require_browser(pytest)

    shot = tmp_path / "lesson00_after_slider.png"
    log = tmp_path / "voila.log"
    t0 = time.monotonic()
    server = _lab.server(_voila(LESSON), _lab.ROOT, log, tmp_path / "jupyter")
    with server as (base, token), sync_api.sync_playwright() as pw, _lab.explained(log, t0, "voila"):
        url = f"{base}/?token={token}"
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=_lab.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.set_default_timeout(RENDER_TIMEOUT_S * 1000)
            # Voila streams the page while the kernel runs the notebook: wait for the response to
            # start, then for the widgets themselves (the locators below), not for the whole document
            page.goto(url, wait_until="commit")
            # the panel: bits slider, format dropdown, an HTML readout and the histogram image
            slider = page.locator(".widget-slider").filter(has_text="bits")
            handle = slider.locator(".noUi-handle")
            handle.wait_for(state="visible")
            readout = page.locator(".widget-html").filter(has_text="bits/weight").first
            readout.wait_for(state="visible")
            plot = page.locator(PLOT).last
            plot.wait_for(state="visible")
            before_text, before_img = readout.inner_text(), plot.get_attribute("src")
            before_value = handle.get_attribute("aria-valuenow")
            assert re.search(r"^\S+: 4\.\d+ bits/weight", before_text), before_text

            handle.focus()
            page.keyboard.press("ArrowRight")  # 4 -> 5 bits

            readout_changed = """old => Array.from(document.querySelectorAll('.widget-html'))
                .some(e => /bits\\/weight/.test(e.innerText) && e.innerText !== old)"""
            page.wait_for_function(readout_changed, arg=before_text)
            # an Image widget swaps its src (a new blob URL): query the DOM afresh on every poll
            page.wait_for_function(
                """([sel, old]) => { const imgs = document.querySelectorAll(sel);
                           const img = imgs[imgs.length - 1];
                           return img !== undefined && img.complete && img.getAttribute('src') !== old; }""",
                arg=[PLOT, before_img],
            )
            after_text = readout.inner_text()
            after_value = handle.get_attribute("aria-valuenow")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    elapsed = time.monotonic() - t0
    print(f"\nscreenshot: {shot}\nbrowser test: {elapsed:.1f} s; readout {before_text.splitlines()[0]!r}"
          f" -> {after_text.splitlines()[0]!r}")  # fmt: skip
    assert float(before_value) == 4 and float(after_value) == 5
    assert re.search(r"^\S+: 5\.\d+ bits/weight", after_text), after_text
    assert shot.stat().st_size > 10_000
