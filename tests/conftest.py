"""Fixtures shared by the whole suite: a live emulator, a connection pointing at it, no real sleeps."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_portkey.emulator import EmulatorServer
from tests.support.secrets import API_KEY, VIRTUAL_KEY


@dataclass
class PortkeyConnection:
    """What a test needs to know about the ``portkey_default`` connection it runs with."""

    conn_id: str
    base_url: str
    fields: dict[str, Any]

    def set(self, monkeypatch: pytest.MonkeyPatch, *, host: str | None = None, **extra: Any) -> None:
        """Replace the connection's extra options (merged over the defaults), and its host if given."""
        fields = {**self.fields, "extra": {**self.fields["extra"], **extra}}
        if host is not None:
            fields["host"] = host
        monkeypatch.setenv(f"AIRFLOW_CONN_{self.conn_id.upper()}", json.dumps(fields))


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """A fresh Portkey emulator on a free loopback port, seeded with the demo thread and steps."""
    with EmulatorServer(mode="portkey") as server:
        yield server


@pytest.fixture
def portkey_conn(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> PortkeyConnection:
    """``portkey_default`` pointing at the emulator, via ``AIRFLOW_CONN_PORTKEY_DEFAULT``."""
    fields = {
        "conn_type": "portkey",
        "host": emulator.url,
        "password": API_KEY,
        "extra": {"virtual_key": VIRTUAL_KEY, "max_retry_wait": 2},
    }
    connection = PortkeyConnection("portkey_default", emulator.base_url, fields)
    connection.set(monkeypatch)
    return connection


@pytest.fixture
def sleeps(mocker: Any) -> list[float]:
    """Record instead of sleeping: the hook's backoff and the sensor's poke interval cost no time."""
    recorded: list[float] = []
    mocker.patch("time.sleep", side_effect=recorded.append)
    return recorded


@pytest.fixture
def no_jitter(mocker: Any) -> None:
    """Full jitter always picks the top of the window, so backoff waits are predictable."""
    mocker.patch("random.random", return_value=1.0)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at DEBUG and above, for secret-leak checks."""
    caplog.set_level(logging.DEBUG)
    return caplog


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


@pytest.fixture(scope="session")
def airflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``airflow db migrate`` once per session; each ``airflow dags test`` run gets a copy."""
    from tests.example_dags.airflow_cli import migrate_template

    return migrate_template(tmp_path_factory.mktemp("airflow-template"))
