"""Faults on the POST endpoints: which ones leave a run behind, for the "never retry a POST blindly" rule."""

from __future__ import annotations

import httpx
import pytest
import requests

from airflow_provider_portkey.emulator import ASST_DEMO, ASST_TOOLS, EmulatorServer
from tests.emulator.conftest import PORTKEY_HEADERS, RunApi

CREATE = {"assistant_id": ASST_DEMO}


def test_reset_after_creates_the_run_then_resets_the_connection(
    server: EmulatorServer, client: httpx.Client
) -> None:
    server.state.add_fault("reset_after", path_contains="/threads/runs")
    with pytest.raises(httpx.ReadError, match="reset"):
        client.post("/threads/runs", json=CREATE)
    assert server.state.runs_created == 1
    (created,) = server.state.runs
    assert created["status"] == "queued"


def test_a_blind_retry_after_reset_after_makes_a_duplicate(
    server: EmulatorServer, client: httpx.Client
) -> None:
    server.state.add_fault("reset_after", path_contains="/threads/runs")
    with pytest.raises(httpx.ReadError):
        client.post("/threads/runs", json=CREATE)
    assert client.post("/threads/runs", json=CREATE).status_code == 200
    assert server.state.runs_created == 2
    assert len({run["thread_id"] for run in server.state.runs}) == 2


def test_reset_after_on_a_run_of_a_thread_then_a_retry_meets_the_active_run(
    server: EmulatorServer, runs: RunApi, client: httpx.Client
) -> None:
    first = runs.create()
    runs.poll(first, 2)
    path = f"/threads/{first['thread_id']}/runs"
    server.state.add_fault("reset_after", path_contains=path)
    with pytest.raises(httpx.ReadError):
        client.post(path, json=CREATE)
    retry = client.post(path, json=CREATE)
    assert retry.status_code == 400
    assert "already has an active run" in retry.json()["error"]["message"]
    assert server.state.runs_created == 2


def test_reset_after_on_submit_tool_outputs_has_submitted(server: EmulatorServer, runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    call_id = [runs.get(run) for _ in range(2)][-1]["required_action"]["submit_tool_outputs"]["tool_calls"][
        0
    ]["id"]
    server.state.add_fault("reset_after", path_contains="/submit_tool_outputs")
    with pytest.raises(httpx.ReadError):
        runs.submit(run, [{"tool_call_id": call_id, "output": "x"}])
    retry = runs.submit(run, [{"tool_call_id": call_id, "output": "x"}])
    assert retry.status_code == 400
    assert retry.json()["error"]["message"] == 'Runs in status "queued" do not accept tool outputs.'


def test_reset_after_is_a_connection_error_for_requests(server: EmulatorServer) -> None:
    server.state.add_fault("reset_after")
    with requests.Session() as session, pytest.raises(requests.ConnectionError):
        session.post(server.base_url + "/threads/runs", json=CREATE, headers=PORTKEY_HEADERS, timeout=5)
    assert server.state.runs_created == 1


@pytest.mark.parametrize("status", [429, 503])
def test_a_status_fault_on_a_post_creates_nothing(
    server: EmulatorServer, client: httpx.Client, status: int
) -> None:
    server.state.add_fault(
        "status", status=status, path_contains="/threads/runs", headers={"Retry-After": "1"}
    )
    response = client.post("/threads/runs", json=CREATE)
    assert response.status_code == status
    assert server.state.runs_created == 0
    assert server.state.runs == []
    assert client.post("/threads/runs", json=CREATE).status_code == 200  # the safe retry
    assert server.state.runs_created == 1


def test_a_reset_fault_on_a_post_creates_nothing(server: EmulatorServer, client: httpx.Client) -> None:
    server.state.add_fault("reset", path_contains="/threads/runs")
    with pytest.raises(httpx.ReadError):
        client.post("/threads/runs", json=CREATE)
    assert server.state.runs_created == 0


def test_a_status_fault_on_get_run_does_not_advance_it(server: EmulatorServer, runs: RunApi) -> None:
    run = runs.create()
    server.state.add_fault("status", status=503, times=3, path_contains=run["id"])
    for _ in range(3):
        assert runs.client.get(runs.path(run)).status_code == 503
    assert runs.get(run)["status"] == "in_progress"


def test_a_status_fault_on_cancel_leaves_the_run_going(server: EmulatorServer, runs: RunApi) -> None:
    run = runs.create()
    server.state.add_fault("status", status=500, path_contains="/cancel")
    assert runs.cancel(run).status_code == 500
    assert runs.get(run)["status"] == "in_progress"
