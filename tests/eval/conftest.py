"""The model fixtures (loaded once per process) and the one-thread setting of tests/models."""

from tests.models.conftest import minilm, one_torch_thread, smollm2  # noqa: F401
