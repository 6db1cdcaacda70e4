from __future__ import annotations

from typing import Any

import pytest
import torch

from ._offline import load_offline


@pytest.fixture(scope="session")
def smollm2() -> Any:
    """SmolLM2 parsed once per process; tests that modify weights take ``.fresh()`` copies."""
    return load_offline("smollm2-135m")


@pytest.fixture(scope="session")
def minilm() -> Any:
    return load_offline("minilm-l6")


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():
    """Run these tests on one torch thread: on a shared 2-core machine, OpenMP's two threads wait on
    each other and a forward pass gets several times slower. Package scope: set before any module
    fixture runs a model, since float32 results can differ in the last bits between thread counts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
