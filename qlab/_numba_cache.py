"""Where numba keeps the compiled kernels of qlab (``cache=True``): outside the package, and keyed
by qlab's numba sources.

numba's default is a ``__pycache__`` beside each source file, i.e. inside the installed package
(a read-only site-packages, or the git checkout of a learner). qlab uses, in order:
``$NUMBA_CACHE_DIR`` (numba's own setting, respected as it is), ``$QLAB_CACHE/numba``, then
``~/.cache/qlab/numba`` (``$XDG_CACHE_HOME`` respected) -- and below the last two a directory named
by :func:`source_fingerprint`.

Why the fingerprint: numba validates a cached kernel against the modification time and size of
*its own* source file only. A kernel that calls an ``@njit`` function of another module (the
imatrix K-quant search in ``_qkx_lanes.py``, called from ``_imx_kernels.py``) keeps running the old
compiled callee after that module changes -- silently wrong bytes after an update. Hashing the
text of every qlab module that uses numba gives each version of those sources its own cache.
Imported first by ``qlab/__init__``, before any module that imports numba; if numba was already
imported, its config is updated.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def source_fingerprint(package: Path = PACKAGE) -> str:
    """16 hex digits of SHA-256 over the relative path and bytes of every ``.py`` file under
    ``package`` that mentions numba (so an edit to a kernel, or to a kernel it calls, changes it)."""
    h = hashlib.sha256()
    for p in sorted(package.rglob("*.py")):
        data = p.read_bytes()
        if b"numba" in data:
            h.update(p.relative_to(package).as_posix().encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def default_dir() -> Path:
    if os.environ.get("QLAB_CACHE"):
        base = Path(os.environ["QLAB_CACHE"]) / "numba"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "qlab" / "numba"
    return base / source_fingerprint()


def configure() -> str:
    """Set ``NUMBA_CACHE_DIR`` unless the user did; return the directory in use."""
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = str(default_dir())
        config = sys.modules.get("numba.core.config")
        if config is not None and not getattr(config, "CACHE_DIR", ""):
            config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    return os.environ["NUMBA_CACHE_DIR"]


configure()
