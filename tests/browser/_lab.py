"""Helpers of the browser tests: find Debian's chromium, start a Jupyter server (Voilà or
JupyterLab) on localhost with a random token and private Jupyter directories, and explain a
failure with the tail of the server's log (the kernels' tracebacks go there).

JupyterLab runs on a *copy* of ``notebooks/`` (same relative layout, ``ko/`` included) with
autosave off, so the committed notebooks are never rewritten; the app is exposed to the page
(``LabApp.expose_app_in_browser``) so that the test drives it through ``window.jupyterapp``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90  # server up (a cold machine: imports from disk)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]

#: the last browser run's timing table and artifact path, printed in pytest's terminal summary
SUMMARY: list[str] = []


def chromium_path() -> str | None:
    """``$QLAB_CHROMIUM``, Debian's real binary behind the ``chromium`` launcher, or one on PATH."""
    env = os.environ.get("QLAB_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else shutil.which(env)
    for p in ("/usr/lib/chromium/chromium",):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_browser(pytest) -> str:  # noqa: ANN001 - the pytest module, to skip or fail
    """The chromium binary; skip without one -- or fail as root with apt-get (CI), where
    ``make install`` (scripts/install_browser.sh) should have installed Debian's package."""
    exe = chromium_path()
    if exe is None:
        why = "no chromium: run scripts/install_browser.sh (make install does, as root with apt-get)"
        if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None:
            pytest.fail(why + " -- root with apt-get here, so make install should have installed it")
        pytest.skip(why)
    return exe


def korean_font_families() -> set[str]:
    """Font families fontconfig says cover Korean (``fc-list :lang=ko``); empty without fc-list."""
    if shutil.which("fc-list") is None:
        return set()
    out = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True, check=False).stdout
    return {name.strip() for line in out.splitlines() for name in line.split(",") if name.strip()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Poll ``url`` until it answers (any HTTP status), or fail if the server died or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(proc.args[2:4])} exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)  # polling interval, not synchronisation
    raise TimeoutError(f"no answer from {url} within {timeout} s")


def _jupyter_env(home: Path) -> dict[str, str]:
    """Private config/data/runtime directories under ``home``: nothing of the user's Jupyter
    setup is read, nothing is written outside ``home``."""
    dirs = {k: home / k.lower() for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return {**os.environ, **{k: str(v) for k, v in dirs.items()}, "JUPYTER_PLATFORM_DIRS": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}  # fmt: skip


@contextlib.contextmanager
def server(args: Callable[[int, str], list[str]], cwd: Path, log: Path, home: Path) -> Iterator[tuple[str, str]]:
    """``python -m <args(port, token)>`` on a free localhost port with a random token; yields
    (base url, token) once it answers; the whole process group is always stopped."""
    port, token = free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", *args(port, token)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=_jupyter_env(home),
                                start_new_session=True)  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, START_TIMEOUT_S)
            yield f"http://127.0.0.1:{port}", token
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


# JupyterLab user settings: no autosave (the copies stay as copied), every cell in the DOM (no
# windowing: the test reads outputs and panels anywhere in the notebook), no news/update toasts
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"checkForUpdates": False, "fetchNews": "false"},
}


@contextlib.contextmanager
def lab_server(home: Path, log: Path) -> Iterator[tuple[str, str, Path]]:
    """JupyterLab (what ``make lab`` opens) on a copy of ``notebooks/`` under ``home``; yields
    (base url, token, the copy's root)."""
    root = home / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns("translations", ".ipynb_checkpoints"))
    settings = home / "lab-settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    root_flag = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # as `make lab` does

    def args(port: int, token: str) -> list[str]:
        return ["jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True",
                f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
                f"--ServerApp.root_dir={root}", *root_flag]  # fmt: skip

    with server(args, root, log, home) as (url, token):
        yield url, token, root


@contextlib.contextmanager
def explained(log: Path, t0: float, what: str = "server") -> Iterator[None]:
    """A failure inside the block carries the elapsed time and the tail of the server's log (the
    kernel's tracebacks and execution progress): a browser timeout alone says nothing."""
    try:
        yield
    except Exception as e:
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        raise AssertionError(f"{type(e).__name__} after {time.monotonic() - t0:.0f} s: {e}\n"
                             f"--- {what} log (tail) ---\n{tail}") from e  # fmt: skip


def committed_panels(notebook: Path) -> int:
    """How many cells of the committed ``notebook`` display an ipywidgets ``VBox`` (a panel), by
    the widget state saved with it: the browser must find as many, or a panel went missing."""
    nb = json.loads(notebook.read_text())
    state = nb["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    views = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for c in nb["cells"]
             for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]  # fmt: skip
    return sum(state.get(m, {}).get("model_name") == "VBoxModel" for m in views)
