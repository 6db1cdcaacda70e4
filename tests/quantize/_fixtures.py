"""Fixtures shared by the whole-model quantization / analysis tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture(scope="module")
def smol() -> Any:
    """SmolLM2 (parsed once per process by qlab.models.load; tests that modify it take ``.fresh()``)."""
    import qlab.models

    return qlab.models.load("smollm2-135m", progress=False)


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Any:
    """Tiny windows are overhead-bound: one intra-op thread is as fast on a free machine and several
    times faster on a loaded one (no OpenMP hand-off per op). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
