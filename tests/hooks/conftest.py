"""Fixtures for the hook tests: a redirect target, secret-masker reset (ports: ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_portkey.emulator import EmulatorServer
from tests.support.airflow_compat import reset_secrets_masker


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
