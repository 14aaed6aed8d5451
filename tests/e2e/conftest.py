"""Fixtures for the end-to-end tests: the real open-source Portkey gateway as a local peer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import PortkeyGateway


@pytest.fixture(scope="session")
def portkey_gateway_entry() -> Path:
    """Path of the installed gateway's start-server.js (installs it once, cached on disk).

    A missing ``node`` or ``npm`` fails the tests with a clear error: they are never skipped.
    """
    return PortkeyGateway.install()


@pytest.fixture(scope="session")
def portkey_gateway(portkey_gateway_entry: Path) -> Iterator[PortkeyGateway]:
    """One gateway process for the whole session, on a free 127.0.0.1 port."""
    with PortkeyGateway() as gateway:
        yield gateway
