"""Fixtures for the emulator tests: a server per test on a free port, clients, and a fake clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_THREAD_ID, EmulatorServer

PORTKEY_HEADERS = {
    "x-portkey-api-key": "pk-test-secret",
    "x-portkey-virtual-key": "vk-test-secret",
    "OpenAI-Beta": "assistants=v2",
}
OPENAI_HEADERS = {"Authorization": "Bearer sk-test-secret", "OpenAI-Beta": "assistants=v2"}


class FakeClock:
    """Stands in for time.monotonic so time-advanced steps move without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as emulator:
        yield emulator


@pytest.fixture
def openai_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(mode="openai") as emulator:
        yield emulator


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    """A keep-alive client that sends valid hosted-Portkey headers."""
    with httpx.Client(base_url=server.base_url, headers=PORTKEY_HEADERS, timeout=10) as http:
        yield http


@pytest.fixture
def bare_client(server: EmulatorServer) -> Iterator[httpx.Client]:
    """A client without default headers, for the header checks."""
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        yield http


@pytest.fixture
def clock(server: EmulatorServer) -> FakeClock:
    fake = FakeClock()
    server.state.clock = fake
    return fake


@pytest.fixture
def step_path() -> Callable[..., str]:
    """Path (relative to base_url) of a step, or of a run's step list when step_id is None."""

    def build(step_id: str | None = None, thread_id: str = SEED_THREAD_ID, run_id: str = SEED_RUN_ID) -> str:
        steps = f"/threads/{thread_id}/runs/{run_id}/steps"
        return steps if step_id is None else f"{steps}/{step_id}"

    return build


@pytest.fixture
def wait_until() -> Callable[[Callable[[], bool]], None]:
    """Wait for a condition the test cannot be told about directly (e.g. the server read a request)."""

    def wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.005)

    return wait
