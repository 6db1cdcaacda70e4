"""Real zoo models for every backend's tests, loaded once per test session with the network
blocked (offline proof)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.models._offline import load_offline


@pytest.fixture(scope="session")
def minilm() -> Any:
    return load_offline("minilm-l6")


@pytest.fixture(scope="session")
def digits() -> Any:
    return load_offline("digits-cnn")
