"""Fixtures for the hook tests: unreachable and stalled ports, a redirect target, secret-masker reset."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from airflow_provider_portkey.emulator import EmulatorServer
from tests.support.airflow_compat import reset_secrets_masker


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A port whose accept queue is full: a new connection's SYN goes unanswered until it times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # room for exactly one pending connection, never accepted
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):  # fills the queue
            yield port


@pytest.fixture
def redirect_target() -> Iterator[EmulatorServer]:
    """A second local server a redirect points at; it must never receive anything."""
    with EmulatorServer(mode="portkey") as server:
        yield server


@pytest.fixture
def fresh_masker() -> Iterator[None]:
    """Start from an empty Airflow secret masker, so a masked value proves the hook registered it."""
    reset_secrets_masker()
    yield
    reset_secrets_masker()
