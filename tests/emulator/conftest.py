"""Fixtures for the emulator tests: a server per test on a free port, clients, and a fake clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_portkey.emulator import ASST_DEMO, SEED_RUN_ID, SEED_THREAD_ID, EmulatorServer

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


class RunApi:
    """The run endpoints over a real client, so run tests read as the workflow they exercise."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def create(self, assistant_id: str = ASST_DEMO, **body: Any) -> dict[str, Any]:
        """Create a thread and run (POST /threads/runs) and return the run."""
        return self._ok(self.client.post("/threads/runs", json={"assistant_id": assistant_id, **body}))

    def create_on(self, thread_id: str, assistant_id: str = ASST_DEMO, **body: Any) -> httpx.Response:
        return self.client.post(f"/threads/{thread_id}/runs", json={"assistant_id": assistant_id, **body})

    def path(self, run: dict[str, Any], suffix: str = "") -> str:
        return f"/threads/{run['thread_id']}/runs/{run['id']}{suffix}"

    def get(self, run: dict[str, Any]) -> dict[str, Any]:
        return self._ok(self.client.get(self.path(run)))

    def poll(self, run: dict[str, Any], times: int) -> list[str]:
        """The statuses of `times` GETs of the run."""
        return [self.get(run)["status"] for _ in range(times)]

    def tool_calls(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """Poll until the run requires action (at most 10 GETs); its pending tool calls."""
        for _ in range(10):
            body = self.get(run)
            if body["status"] == "requires_action":
                calls: list[dict[str, Any]] = body["required_action"]["submit_tool_outputs"]["tool_calls"]
                return calls
        raise AssertionError("the run did not reach requires_action")

    def cancel(self, run: dict[str, Any]) -> httpx.Response:
        return self.client.post(self.path(run, "/cancel"))

    def submit(self, run: dict[str, Any], outputs: list[dict[str, Any]]) -> httpx.Response:
        return self.client.post(self.path(run, "/submit_tool_outputs"), json={"tool_outputs": outputs})

    def steps(self, run: dict[str, Any], **params: Any) -> list[dict[str, Any]]:
        """The run's steps, oldest first (one page of up to 100)."""
        page = self._ok(
            self.client.get(self.path(run, "/steps"), params={"order": "asc", "limit": 100, **params})
        )
        data: list[dict[str, Any]] = page["data"]
        return data

    @staticmethod
    def _ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def runs(client: httpx.Client) -> RunApi:
    return RunApi(client)
