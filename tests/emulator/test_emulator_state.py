"""The state and handlers without sockets: seeding, reset, faults, record, and pure request handling."""

from __future__ import annotations

import json

import pytest

from airflow_provider_portkey.emulator import (
    ASST_DEMO,
    ASST_TOOLS,
    SEED_RUN_ID,
    SEED_STEP_IDS,
    SEED_THREAD_ID,
    STEP_COMPLETES,
    EmulatorState,
    ReceivedRequest,
)
from airflow_provider_portkey.emulator.app import handle_api
from airflow_provider_portkey.emulator.runs import RunError
from tests.emulator.conftest import PORTKEY_HEADERS

HEADERS = {name.lower(): value for name, value in PORTKEY_HEADERS.items()}


def get(path: str, headers: dict[str, str] | None = None) -> ReceivedRequest:
    return ReceivedRequest("GET", path, [], HEADERS if headers is None else headers)


def test_seeded_state_holds_every_seed_step_in_order() -> None:
    steps = EmulatorState().list_steps(SEED_THREAD_ID, SEED_RUN_ID)
    assert steps is not None
    assert [step["id"] for step in steps] == list(SEED_STEP_IDS)


def test_unseeded_state_is_empty_and_stays_empty_after_reset() -> None:
    state = EmulatorState(seed=False)
    state.reset()
    assert state.list_steps(SEED_THREAD_ID, SEED_RUN_ID) is None


def test_reset_restarts_poll_counts() -> None:
    state = EmulatorState()
    for _ in range(3):
        state.retrieve_step(SEED_THREAD_ID, SEED_RUN_ID, STEP_COMPLETES)
    state.reset()
    step = state.retrieve_step(SEED_THREAD_ID, SEED_RUN_ID, STEP_COMPLETES)
    assert step is not None
    assert step["status"] == "in_progress"


def test_rendered_steps_are_copies() -> None:
    state = EmulatorState(seed=False)
    state.add_step("t", "r", "s", statuses=("completed",), extra_fields={"nested": {"a": 1}})
    first = state.retrieve_step("t", "r", "s")
    assert first is not None
    first["nested"]["a"] = 2
    assert state.retrieve_step("t", "r", "s") == {**first, "nested": {"a": 1}}


@pytest.mark.parametrize(
    "options",
    [{"statuses": ()}, {"advance": "sometimes"}, {"advance": "time", "seconds_per_status": 0}],
)
def test_invalid_step_scripts_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        EmulatorState().add_step("t", "r", "s", **options)  # type: ignore[arg-type]


def test_take_fault_consumes_each_fault_times_times_in_fifo_order() -> None:
    state = EmulatorState()
    state.add_fault("status", status=500, times=2)
    state.add_fault("status", status=503)
    taken = [state.take_fault("/v1/x") for _ in range(4)]
    assert [fault.status if fault else None for fault in taken] == [500, 500, 503, None]


def test_record_keeps_the_newest_requests_but_counts_all() -> None:
    state = EmulatorState(record_limit=2)
    for index in range(3):
        state.record(get(f"/{index}"))
    assert [request.path for request in state.requests] == ["/1", "/2"]
    assert state.request_count == 3


def test_handle_api_answers_without_a_socket() -> None:
    state = EmulatorState()
    ok = handle_api(
        state, "portkey", get(f"/v1/threads/{SEED_THREAD_ID}/runs/{SEED_RUN_ID}/steps/{STEP_COMPLETES}")
    )
    denied = handle_api(state, "openai", get("/v1/threads/t/runs/r/steps"))
    assert ok.status == 200
    assert ok.headers["content-type"] == "application/json"
    assert denied.status == 401


def post(path: str) -> ReceivedRequest:
    return ReceivedRequest("POST", path, [], HEADERS)


def test_handle_api_creates_and_advances_a_run_without_a_socket() -> None:
    state = EmulatorState(seed=False)
    body = json.dumps({"assistant_id": ASST_DEMO}).encode()
    created = handle_api(state, "portkey", post("/v1/threads/runs"), body)
    assert created.status == 200
    run = json.loads(created.body)
    fetched = handle_api(state, "portkey", get(f"/v1/threads/{run['thread_id']}/runs/{run['id']}"))
    assert json.loads(fetched.body)["status"] == "in_progress"
    assert state.runs_created == 1


def test_handle_api_without_a_body_is_a_json_error_for_a_post() -> None:
    response = handle_api(EmulatorState(seed=False), "portkey", post("/v1/threads/runs"))
    assert response.status == 400
    assert json.loads(response.body)["error"]["message"].startswith("We could not parse the JSON body")


def test_rendered_runs_and_their_steps_are_copies() -> None:
    state = EmulatorState(seed=False)
    run = state.create_run(None, ASST_TOOLS, {"metadata": {"a": "1"}})
    run["metadata"]["a"] = "changed"
    for _ in range(2):
        waiting = state.retrieve_run(run["thread_id"], run["id"])
    assert waiting is not None
    assert waiting["metadata"] == {"a": "1"}
    waiting["required_action"]["submit_tool_outputs"]["tool_calls"][0]["function"]["name"] = "changed"
    steps = state.list_steps(run["thread_id"], run["id"])
    assert steps is not None
    steps[0]["step_details"]["tool_calls"][0]["function"]["output"] = "changed"
    again = state.retrieve_run(run["thread_id"], run["id"])
    assert again is not None
    assert (
        again["required_action"]["submit_tool_outputs"]["tool_calls"][0]["function"]["name"] == "get_weather"
    )
    listed = state.list_steps(run["thread_id"], run["id"])
    assert listed is not None
    assert listed[0]["step_details"]["tool_calls"][0]["function"]["output"] is None


def test_scripted_steps_added_to_an_agent_run_list_with_its_steps() -> None:
    state = EmulatorState(seed=False)
    run = state.create_run(None, ASST_DEMO, {})
    state.retrieve_run(run["thread_id"], run["id"])
    state.add_step(run["thread_id"], run["id"], "step_extra", statuses=("completed",))
    steps = state.list_steps(run["thread_id"], run["id"])
    assert steps is not None
    assert len(steps) == 2
    assert "step_extra" in {step["id"] for step in steps}


def test_unknown_thread_raises_a_404_run_error() -> None:
    with pytest.raises(RunError) as raised:
        EmulatorState(seed=False).create_run("thread_nope", ASST_DEMO, {})
    assert raised.value.status == 404
