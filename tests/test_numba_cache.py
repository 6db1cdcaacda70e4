"""numba's kernel cache lives outside the package (issue 11, unhelpful crashes: "Running qlab
writes numba cache files into the source tree"). Fresh interpreters, real kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import qlab
from qlab._numba_cache import source_fingerprint

_CHILD = """
import numpy as np, numba.core.config as c
import qlab
qlab.formats.get("q4_k").encode(np.ones((1, 256), np.float32))  # a cache=True numba kernel
print(c.CACHE_DIR)
"""


def _run(env: dict[str, str]) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "QLAB_CACHE", "XDG_CACHE_HOME")}
    r = subprocess.run([sys.executable, "-c", _CHILD], env={**base, **env}, capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


def _package_index_files() -> set[Path]:
    return set(Path(qlab.__file__).parent.rglob("*.nbi"))


def test_default_is_the_user_cache_not_the_package(tmp_path):
    before = _package_index_files()
    used = _run({"XDG_CACHE_HOME": str(tmp_path)})
    assert used == str(tmp_path / "qlab" / "numba" / source_fingerprint())
    assert list((tmp_path / "qlab" / "numba").rglob("*.nbi"))  # the kernels were cached there
    assert _package_index_files() <= before  # nothing new inside the package


def test_qlab_cache_and_numba_cache_dir_are_respected(tmp_path):
    assert _run({"QLAB_CACHE": str(tmp_path / "q")}) == str(tmp_path / "q" / "numba" / source_fingerprint())
    assert _run({"NUMBA_CACHE_DIR": str(tmp_path / "mine"), "QLAB_CACHE": str(tmp_path / "q")}) == str(tmp_path / "mine")


def test_fingerprint_follows_every_numba_source(tmp_path):
    """numba checks a cached kernel against its own file only; the cache directory must change when
    any module with numba kernels changes (a callee included), and not for other modules."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "caller.py").write_text("import numba\nfrom .sub.callee import f\n")
    (pkg / "sub" / "callee.py").write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    (pkg / "plain.py").write_text("x = 1\n")
    a = source_fingerprint(pkg)
    (pkg / "plain.py").write_text("x = 2\n")
    assert source_fingerprint(pkg) == a
    (pkg / "sub" / "callee.py").write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x + 2\n")
    assert source_fingerprint(pkg) != a
    assert len(a) == 16 and source_fingerprint() == source_fingerprint()
