import json
from pathlib import Path

import pytest

import qlab.cache as cache

ROOT = Path(__file__).resolve().parents[1]


def test_roundtrip_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("QLAB_DATA", str(tmp_path))
    p = cache.save("demo", [{"a": 1.5}], script="scripts/demo.py", params={"n": 2})
    assert p == tmp_path / "cache" / "demo.json"
    got = cache.load("demo")
    assert got["rows"] == [{"a": 1.5}] and got["script"] == "scripts/demo.py" and got["params"] == {"n": 2}
    assert json.loads(p.read_text())["qlab_version"]


def test_bad_names_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("QLAB_DATA", str(tmp_path))
    for bad in ("", "a/b", "x.json"):
        with pytest.raises(ValueError):
            cache.path(bad)
    with pytest.raises(FileNotFoundError, match="scripts"):
        cache.load("nothing")
    with pytest.raises(ValueError):
        cache.save("x", [], script="")


# -- issue 11, item 10: a failed save keeps the good cache ------------------------------------------
_CHILD = """
import resource, signal, sys
import qlab.cache as cache
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # the write fails with EFBIG instead of a kill
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    cache.save("demo", ["x" * 100] * 200, script="scripts/demo.py")
except OSError as e:
    print("failed:", e.errno)
    sys.exit(0)
sys.exit("the oversized save did not fail")
"""


def test_failed_save_keeps_the_previous_cache(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    monkeypatch.setenv("QLAB_DATA", str(tmp_path))
    p = cache.save("demo", [{"good": 1}], script="scripts/demo.py")
    good = p.read_bytes()
    env = {**os.environ, "QLAB_DATA": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "failed: 27" in r.stdout, r.stdout + r.stderr  # 27 = EFBIG
    assert p.read_bytes() == good  # the good cache survived
    assert cache.load("demo")["rows"] == [{"good": 1}]
    assert sorted(x.name for x in p.parent.iterdir()) == ["demo.json"]  # no temporary file left
    fresh = tmp_path / "fresh.txt"
    fresh.write_text("")
    assert p.stat().st_mode & 0o777 == fresh.stat().st_mode & 0o777  # a normal file, not mkstemp's 0600


def test_committed_caches_use_the_current_metric_names():
    """Every committed cache speaks the evaluator's names (``kl``, ``top1``): a row written before
    a rename would make a lesson read a missing key (lesson 16 read ``kl_mean`` from old rows)."""
    legacy = {"kl_mean", "top1_agreement", "kl_divergence_mean"}
    found = []

    def walk(x, where):
        if isinstance(x, dict):
            found.extend(f"{where}: {k}" for k in x if k in legacy)
            for v in x.values():
                walk(v, where)
        elif isinstance(x, list):
            for v in x:
                walk(v, where)

    for p in sorted((ROOT / "data" / "cache").glob("*.json")):
        walk(json.loads(p.read_text()), p.name)
    assert not found, found[:5]
