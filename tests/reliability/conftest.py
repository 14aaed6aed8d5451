"""Fixtures of the fault and abuse suite (helpers live in ``tests.reliability.support``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.hooks.portkey_async import close_shared_client
from tests.hooks.conftest import fresh_masker, redirect_target
from tests.reliability.support import Env, ResetRelay, patch_clock
from tests.sensors.support import FakeClock, debug_logs

__all__ = ["debug_logs", "fresh_masker", "redirect_target"]


@pytest.fixture
def relay(emulator: EmulatorServer) -> Iterator[ResetRelay]:
    """A relay in front of the emulator that resets chosen responses mid-way (none until told)."""
    with ResetRelay(emulator.port) as cutting_relay:
        yield cutting_relay


@pytest.fixture
def env(emulator: EmulatorServer, relay: ResetRelay) -> Env:
    return Env(emulator, relay)


@pytest.fixture
def clock(mocker: Any) -> FakeClock:
    """Fake time for sensors and triggers; the emulator's own thread keeps real ``asyncio.sleep``."""
    return patch_clock(mocker)


@pytest_asyncio.fixture
async def loop_client() -> AsyncIterator[None]:
    """Close the test loop's shared HTTP client at the end, as a triggerer does when it stops."""
    yield
    await close_shared_client()
