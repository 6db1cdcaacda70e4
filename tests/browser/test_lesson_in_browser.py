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

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LESSON = "notebooks/00_formats_tour.ipynb"
START_TIMEOUT_S = 60  # server up
RENDER_TIMEOUT_S = 300  # notebook executed and widgets rendered (a cold machine: imports from disk, numba compiles)

pytestmark = pytest.mark.slow


def chromium_path() -> str | None:
    """``$QLAB_CHROMIUM``, Debian's real binary behind the ``chromium`` launcher, or one on PATH."""
    env = os.environ.get("QLAB_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else shutil.which(env)
    for p in ("/usr/lib/chromium/chromium",):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _must_have_browser() -> bool:
    """Root with apt-get: ``make install`` installs chromium, so a missing one is a failure."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Poll ``url`` until it answers (any HTTP status), or fail if the server died or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)  # polling interval, not synchronisation
    raise TimeoutError(f"no answer from {url} within {timeout} s")


@contextlib.contextmanager
def voila_server(notebook: str, log: Path):
    """Voilà serving ``notebook`` on a free localhost port with a random token; always stopped."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    cmd = [sys.executable, "-m", "voila", notebook, "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", f"--token={token}", "--show_tracebacks=True"]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, START_TIMEOUT_S)
            yield f"http://127.0.0.1:{port}/?token={token}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@contextlib.contextmanager
def _explained(log: Path, t0: float):
    """A failure inside the block carries the elapsed time and the tail of Voila's log (the
    kernel's tracebacks and execution progress): a browser timeout alone says nothing."""
    try:
        yield
    except Exception as e:
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        raise AssertionError(f"{type(e).__name__} after {time.monotonic() - t0:.0f} s: {e}\n--- voila log (tail) ---\n{tail}") from e


def test_bits_slider_changes_readout_and_plot(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[test]')")
    pytest.importorskip("voila", reason="voila not installed (pip install -e '.[test]')")
    exe = chromium_path()
    if exe is None:
        why = "no chromium: run scripts/install_browser.sh (make install does, as root with apt-get)"
        if _must_have_browser():
            pytest.fail(why + " -- root with apt-get here, so make install should have installed it")
        pytest.skip(why)

    shot = tmp_path / "lesson00_after_slider.png"
    log = tmp_path / "voila.log"
    t0 = time.monotonic()
    with voila_server(LESSON, log) as url, sync_api.sync_playwright() as pw, _explained(log, t0):
        browser = pw.chromium.launch(executable_path=exe, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])  # fmt: skip
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
            plot = page.locator(".widget-output img").last
            plot.wait_for(state="visible")
            before_text, before_img = readout.inner_text(), plot.get_attribute("src")
            before_value = handle.get_attribute("aria-valuenow")
            assert re.search(r"^\S+: 4\.\d+ bits/weight", before_text), before_text

            handle.focus()
            page.keyboard.press("ArrowRight")  # 4 -> 5 bits

            readout_changed = """old => Array.from(document.querySelectorAll('.widget-html'))
                .some(e => /bits\\/weight/.test(e.innerText) && e.innerText !== old)"""
            page.wait_for_function(readout_changed, arg=before_text)
            # the Output widget replaces its <img>: query the DOM afresh on every poll
            page.wait_for_function(
                """old => { const imgs = document.querySelectorAll('.widget-output img');
                           const img = imgs[imgs.length - 1];
                           return img !== undefined && img.complete && img.getAttribute('src') !== old; }""",
                arg=before_img,
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
