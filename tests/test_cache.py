import json

import pytest

import qlab.cache as cache


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
