"""Property test of qlab.cache (issue 11, "the rule from now on"): random names, corrupt entries
(truncated, binary, valid JSON of the wrong kind) and unserialisable rows give the payload or a
ValueError/TypeError naming the file -- never another exception, never a half-written cache."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qlab.cache as cache


@pytest.fixture
def data(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("cachefuzz")
    monkeypatch.setenv("QLAB_DATA", str(d))
    return d


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=8), st.none(), st.integers(), st.sampled_from(["..", ".", "a\\b", "ok"])))
def test_names(data, name):
    try:
        p = cache.path(name)
    except (ValueError, TypeError):
        return
    assert p.parent == data / "cache" and p.name == f"{name}.json"


CONTENT = st.one_of(st.binary(max_size=40), st.sampled_from([
    b"", b"{", b'{"rows": [1, 2', b"[1, 2]", b"null", b"3", b'"text"', b'{"no_rows": 1}', b"\xff\xfe{}",
    b'{"rows": [], "script": "s"}']))  # fmt: skip


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=CONTENT)
def test_corrupt_entries(data, content):
    p = data / "cache" / "demo.json"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(content)
    try:
        got = cache.load("demo")
    except ValueError as e:
        assert "demo.json" in str(e) and "regenerate" in str(e)
        return
    assert isinstance(got, dict) and "rows" in got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.one_of(st.lists(st.floats(allow_nan=True)), st.just([object()]), st.just({1: {2}}),
                      st.dictionaries(st.text(max_size=3), st.integers())))  # fmt: skip
def test_save_keeps_old_cache_on_failure(data, rows):
    cache.save("demo", [{"good": 1}], script="scripts/demo.py")
    try:
        cache.save("demo", rows, script="scripts/demo.py")
    except (ValueError, TypeError):
        assert cache.load("demo")["rows"] == [{"good": 1}]
        assert sorted(x.name for x in (data / "cache").iterdir()) == ["demo.json"]
        return
    assert json.dumps(cache.load("demo")["rows"]) == json.dumps(rows)
