"""Where qlab's bundled data lives (WikiText-2 test text, cached digits-cnn weights)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """``$QLAB_DATA`` if set, else the ``data/`` directory at the repository root."""
    env = os.environ.get("QLAB_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"
