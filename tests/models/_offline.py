"""Test helpers: load zoo models once per process with the network blocked (offline proof)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


@contextmanager
def no_network() -> Iterator[None]:
    """Any attempt to resolve a host name or open a connection raises (a hub download would fail)."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network access attempted while loading a model (qlab must work offline)")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket.socket, "connect", refuse)
        yield


def load_offline(name: str) -> Any:
    """``qlab.models.load(name)`` with the network blocked (the first call per process parses)."""
    from qlab.models import load

    with no_network():
        return load(name, progress=False)
