"""The /_emulator/ control API that lets other processes script a running emulator."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from airflow_provider_portkey.emulator import ASST_TOOLS, STEP_COMPLETES, STEP_INSTANT, EmulatorServer, Stage
from tests.emulator.conftest import FakeClock, RunApi


def test_control_steps_adds_a_scripted_step(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    step = {
        "thread_id": "thread_c",
        "run_id": "run_c",
        "step_id": "step_c",
        "statuses": ["in_progress", "failed"],
    }
    created = httpx.post(server.url + "/_emulator/steps", json=step)
    assert created.status_code == 201
    path = step_path("step_c", "thread_c", "run_c")
    assert [client.get(path).json()["status"] for _ in range(2)] == ["in_progress", "failed"]


def test_control_faults_queues_a_fault(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    fault = {"kind": "status", "status": 429, "headers": {"Retry-After": "2"}, "path_contains": STEP_INSTANT}
    assert httpx.post(server.url + "/_emulator/faults", json=fault).status_code == 201
    response = client.get(step_path(STEP_INSTANT))
    assert (response.status_code, response.headers["retry-after"]) == (429, "2")


def test_control_rejects_bad_arguments_with_400(server: EmulatorServer) -> None:
    bad = [
        ("/_emulator/steps", b'{"thread_id": "t"}'),
        ("/_emulator/steps", b'{"thread_id": "t", "run_id": "r", "step_id": "s", "colour": "red"}'),
        ("/_emulator/faults", b'{"kind": "explode"}'),
        ("/_emulator/faults", b"not json"),
        ("/_emulator/faults", b"[1, 2]"),
    ]
    for path, body in bad:
        response = httpx.post(server.url + path, content=body)
        assert response.status_code == 400, body
        assert response.json()["error"]


def test_control_requests_returns_the_record_without_control_calls(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    client.get(step_path(), params={"limit": 2, "order": "asc"})
    httpx.post(server.url + "/_emulator/reset")
    client.get(step_path(STEP_INSTANT), headers={"X-Custom": "yes"})

    record = httpx.get(server.url + "/_emulator/requests").json()["requests"]

    assert len(record) == 1
    (request,) = record
    assert request["method"] == "GET"
    assert request["path"] == "/v1/threads/thread_demo/runs/run_demo/steps/step_instant"
    assert request["query"] == []
    assert request["headers"]["x-custom"] == "yes"
    assert request["headers"]["openai-beta"] == "assistants=v2"


def test_record_keeps_query_pairs_in_order(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    client.get(step_path(), params=[("limit", "2"), ("include[]", "a"), ("include[]", "b")])
    (request,) = server.state.requests
    assert request.query == [("limit", "2"), ("include[]", "a"), ("include[]", "b")]
    assert all(name == name.lower() for name in request.headers)


def test_control_reset_clears_record_faults_and_reseeds(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_step("thread_x", "run_x", "step_x")
    server.state.add_fault("status", status=500, path_contains="never-requested")
    for _ in range(3):
        client.get(step_path(STEP_COMPLETES))

    assert httpx.post(server.url + "/_emulator/reset").status_code == 200

    assert server.state.requests == []
    assert server.state.take_fault("/never-requested") is None
    assert client.get(step_path("step_x", "thread_x", "run_x")).status_code == 404
    assert client.get(step_path(STEP_COMPLETES)).json()["status"] == "in_progress"


def test_unknown_control_endpoint_is_404(server: EmulatorServer) -> None:
    assert httpx.get(server.url + "/_emulator/steps").status_code == 404


def test_control_runs_scripts_an_assistant(server: EmulatorServer, runs: RunApi) -> None:
    script = {
        "assistant_id": "asst_remote",
        "stages": [
            {"status": "queued"},
            {"status": "in_progress", "repeat": 2, "message": True},
            {"status": "requires_action", "tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]},
            {"status": "completed"},
        ],
    }
    assert httpx.post(server.url + "/_emulator/runs", json=script).status_code == 201
    run = runs.create("asst_remote")
    waiting = [runs.get(run) for _ in range(3)][-1]
    assert waiting["status"] == "requires_action"
    (call,) = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert call["function"] == {"name": "lookup", "arguments": '{"q": "x"}'}
    assert runs.submit(run, [{"tool_call_id": call["id"], "output": "y"}]).json()["status"] == "completed"


def test_control_runs_scripts_a_time_advanced_assistant(
    server: EmulatorServer, clock: FakeClock, runs: RunApi
) -> None:
    script = {
        "assistant_id": "asst_timed",
        "stages": [{"status": "queued"}, {"status": "completed"}],
        "advance": "time",
        "seconds_per_status": 30,
    }
    assert httpx.post(server.url + "/_emulator/runs", json=script).status_code == 201
    run = runs.create("asst_timed")
    assert runs.get(run)["status"] == "queued"
    clock.advance(30)
    assert runs.get(run)["status"] == "completed"


@pytest.mark.parametrize(
    "script",
    [
        {"stages": [{"status": "completed"}]},
        {"assistant_id": "a", "stages": [{"status": "queued"}]},
        {"assistant_id": "a", "stages": [{"status": "completed", "colour": "red"}]},
        {"assistant_id": "a", "stages": [{"status": "requires_action", "tool_calls": [{"name": "f"}]}]},
        {"assistant_id": "a", "stages": [{"status": "completed"}], "advance": "sometimes"},
        {"assistant_id": "a", "stages": [{"status": "completed"}], "seconds_per_status": 0},
        {"assistant_id": "", "stages": [{"status": "completed"}]},
    ],
)
def test_control_runs_rejects_bad_scripts_with_400(server: EmulatorServer, script: dict[str, object]) -> None:
    response = httpx.post(server.url + "/_emulator/runs", json=script)
    assert response.status_code == 400
    assert response.json()["error"]


def test_control_runs_lists_created_runs_and_counts_them(server: EmulatorServer, runs: RunApi) -> None:
    first = runs.create(ASST_TOOLS)
    runs.get(first)
    runs.create()
    listing = httpx.get(server.url + "/_emulator/runs").json()
    assert listing["runs_created"] == 2
    assert [(run["id"], run["status"]) for run in listing["runs"]] == [
        (first["id"], "in_progress"),
        (listing["runs"][1]["id"], "queued"),
    ]
    assert set(listing["runs"][0]) == {"id", "thread_id", "assistant_id", "status", "steps"}


def test_control_reset_clears_runs_their_threads_and_custom_scripts(
    server: EmulatorServer, runs: RunApi, client: httpx.Client
) -> None:
    run = runs.create()
    server.state.add_run_script("asst_custom", [Stage("queued"), Stage("failed")])

    assert httpx.post(server.url + "/_emulator/reset").status_code == 200

    assert server.state.runs_created == 0
    assert server.state.runs == []
    assert client.get(runs.path(run)).status_code == 404
    assert runs.create_on(run["thread_id"]).status_code == 404
    assert runs.poll(runs.create("asst_custom"), 1) == ["in_progress"]  # back to the demo script
