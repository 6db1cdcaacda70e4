"""Where numba keeps the compiled kernels of qlab (``cache=True``): outside the package.

numba's default is a ``__pycache__`` beside each source file, i.e. inside the installed package
(a read-only site-packages, or the git checkout of a learner). qlab uses, in order:
``$NUMBA_CACHE_DIR`` (numba's own setting, respected as it is), ``$QLAB_CACHE/numba``, then
``~/.cache/qlab/numba`` (``$XDG_CACHE_HOME`` respected). Imported first by ``qlab/__init__``,
before any module that imports numba; if numba was already imported, its config is updated.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def default_dir() -> Path:
    if os.environ.get("QLAB_CACHE"):
        return Path(os.environ["QLAB_CACHE"]) / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qlab" / "numba"


def configure() -> str:
    """Set ``NUMBA_CACHE_DIR`` unless the user did; return the directory in use."""
    if not os.environ.get("NUMBA_CACHE_DIR"):
        os.environ["NUMBA_CACHE_DIR"] = str(default_dir())
        config = sys.modules.get("numba.core.config")
        if config is not None and not getattr(config, "CACHE_DIR", ""):
            config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    return os.environ["NUMBA_CACHE_DIR"]


configure()
