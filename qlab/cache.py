"""Committed result caches for the lessons (``data/cache/<name>.json``).

A lesson that needs an expensive measurement (a perplexity sweep, GPTQ on the whole LLM) loads it
from a JSON file that a script in ``scripts/`` regenerates; the file records that script, its
parameters and the qlab version, so every figure a lesson shows can be traced and re-measured::

    qlab.cache.save("llm_methods", rows, script="scripts/llm_methods.py", params={"windows": 16})
    payload = qlab.cache.load("llm_methods")        # {"rows": [...], "script": ..., "params": ...}
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from .files import write_text
from .models.paths import data_dir


def path(name: str) -> Path:
    """``data/cache/<name>.json``."""
    if not isinstance(name, str):
        raise TypeError(f"cache name must be a str like 'llm_methods', got {type(name).__name__} {name!r}")
    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", "..") or name.endswith(".json"):
        raise ValueError(f"cache name must be a bare name like 'llm_methods', got {name!r}")
    return data_dir() / "cache" / f"{name}.json"


def save(name: str, rows: Any, *, script: str, params: dict[str, Any] | None = None) -> Path:
    """Write ``rows`` (JSON-serialisable) with provenance; return the file's path."""
    from . import __version__

    if not script:
        raise ValueError("save() needs the script that regenerates the cache")
    p = path(name)
    payload = {
        "name": name,
        "script": script,
        "params": params or {},
        "qlab_version": __version__,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "created": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    # serialised first (TypeError for rows JSON cannot hold, before any write), then to a temporary
    # file in the same directory and renamed: a failed save keeps the old cache
    text = json.dumps(payload, indent=1, sort_keys=False) + "\n"
    p.parent.mkdir(parents=True, exist_ok=True)
    write_text(p, text)
    return p


def load(name: str) -> dict[str, Any]:
    """The payload :func:`save` wrote; a missing cache names the script that makes it."""
    p = path(name)
    if not p.exists():
        raise FileNotFoundError(f"no cache {p}; regenerate it with the script in scripts/ that writes {name!r}")
    try:
        payload = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt cache {p} ({e}); regenerate it with the script that writes {name!r}") from None
    if not isinstance(payload, dict) or "rows" not in payload:
        raise ValueError(f"corrupt cache {p}: expected a JSON object with 'rows' (as save() writes), got "
                         f"{type(payload).__name__}; regenerate it with the script that writes {name!r}")  # fmt: skip
    return payload


__all__ = ["path", "save", "load"]
