"""Fixtures shared by the whole suite: a live emulator, a connection pointing at it, no real sleeps."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
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

    def set(self, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
        """Replace the connection's extra options (merged over the defaults)."""
        fields = {**self.fields, "extra": {**self.fields["extra"], **extra}}
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
