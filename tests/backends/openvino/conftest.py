"""A scratch directory for the IR files of one test module (the models come from tests/backends/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("openvino")
