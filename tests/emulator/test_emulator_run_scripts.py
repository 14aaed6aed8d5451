"""Run scripts: each built-in assistant's course, time-advanced runs on the fake clock, custom scripts."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_portkey.emulator import (
    ADVANCE_KEY,
    ASST_DEMO,
    ASST_EXPIRES,
    ASST_FAILS,
    ASST_INCOMPLETE,
    ASST_SLOW,
    ASST_TOOLS,
    RUN_TERMINAL_STATUSES,
    SECONDS_KEY,
    SLOW_POLLS,
    EmulatorServer,
    FunctionCall,
    Stage,
)
from tests.emulator.conftest import FakeClock, RunApi

SERVER_ERROR = {"code": "server_error", "message": "Sorry, something went wrong."}
TIME = {ADVANCE_KEY: "time", SECONDS_KEY: "10"}


def test_demo_script_creates_a_message_step_that_completes(runs: RunApi) -> None:
    run = runs.create(ASST_DEMO)
    assert runs.poll(run, 1) == ["in_progress"]
    (step,) = runs.steps(run)
    assert (step["type"], step["status"]) == ("message_creation", "in_progress")
    assert step["step_details"]["message_creation"]["message_id"].startswith("msg_")
    assert runs.poll(run, 1) == ["completed"]
    assert [step["status"] for step in runs.steps(run)] == ["completed"]


def test_any_other_assistant_runs_like_the_demo(runs: RunApi) -> None:
    run = runs.create("asst_someone_else")
    assert runs.poll(run, 3) == ["in_progress", "completed", "completed"]
    assert [step["type"] for step in runs.steps(run)] == ["message_creation"]


def test_tools_script_requires_action_with_one_function_call(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    assert run["tools"][0]["function"]["name"] == "get_weather"
    assert runs.poll(run, 1) == ["in_progress"]
    assert runs.steps(run) == []
    waiting = runs.get(run)
    assert waiting["status"] == "requires_action"
    assert waiting["required_action"]["type"] == "submit_tool_outputs"
    (call,) = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    (step,) = runs.steps(run)
    assert (step["type"], step["status"]) == ("tool_calls", "in_progress")
    (step_call,) = step["step_details"]["tool_calls"]
    assert step_call == {**call, "function": {**call["function"], "output": None}}


def test_tools_script_waits_in_requires_action_until_outputs_arrive(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    assert runs.poll(run, 6) == ["in_progress"] + ["requires_action"] * 5


def test_tools_script_after_the_outputs(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    call_id = [runs.get(run) for _ in range(2)][-1]["required_action"]["submit_tool_outputs"]["tool_calls"][
        0
    ]["id"]
    runs.submit(run, [{"tool_call_id": call_id, "output": "12C"}])
    running = runs.get(run)
    assert running["status"] == "in_progress"
    tool_step, message_step = runs.steps(run)
    assert (tool_step["status"], tool_step["step_details"]["tool_calls"][0]["function"]["output"]) == (
        "completed",
        "12C",
    )
    assert (message_step["type"], message_step["status"]) == ("message_creation", "in_progress")
    assert runs.get(run)["status"] == "completed"
    assert [step["status"] for step in runs.steps(run)] == ["completed", "completed"]


def test_fails_script_fails_the_run_and_its_step(runs: RunApi) -> None:
    run = runs.create(ASST_FAILS)
    assert runs.poll(run, 2) == ["in_progress", "failed"]
    failed = runs.get(run)
    assert failed["last_error"] == SERVER_ERROR
    assert failed["failed_at"] is not None
    assert failed["completed_at"] is failed["cancelled_at"] is None
    (step,) = runs.steps(run)
    assert (step["status"], step["last_error"]) == ("failed", SERVER_ERROR)
    assert step["failed_at"] == failed["failed_at"]


def test_slow_script_stays_in_progress_for_many_polls(runs: RunApi) -> None:
    run = runs.create(ASST_SLOW)
    assert set(runs.poll(run, 50)) == {"in_progress"}
    assert SLOW_POLLS >= 100


def test_slow_script_completes_after_slow_polls(server: EmulatorServer) -> None:
    state = server.state
    run = state.create_run(None, ASST_SLOW, {})
    seen = [state.retrieve_run(run["thread_id"], run["id"]) for _ in range(SLOW_POLLS + 1)]
    statuses = [body["status"] for body in seen if body]
    assert statuses == ["in_progress"] * SLOW_POLLS + ["completed"]


def test_incomplete_script_sets_incomplete_details(runs: RunApi) -> None:
    run = runs.create(ASST_INCOMPLETE)
    assert runs.poll(run, 2) == ["in_progress", "incomplete"]
    ended = runs.get(run)
    assert ended["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert ended["completed_at"] is ended["failed_at"] is None
    assert [step["status"] for step in runs.steps(run)] == ["completed"]


def test_expires_script_expires_the_run_and_its_step(runs: RunApi) -> None:
    run = runs.create(ASST_EXPIRES)
    assert runs.poll(run, 2) == ["in_progress", "expired"]
    ended = runs.get(run)
    assert ended["expires_at"] == ended["created_at"] + 600
    assert [step["status"] for step in runs.steps(run)] == ["expired"]


@pytest.mark.parametrize("assistant_id", [ASST_DEMO, ASST_FAILS, ASST_INCOMPLETE, ASST_EXPIRES, "asst_x"])
def test_every_script_ends_terminal_and_stays_there(runs: RunApi, assistant_id: str) -> None:
    run = runs.create(assistant_id)
    last_three = runs.poll(run, 5)[-3:]
    assert len(set(last_three)) == 1
    assert last_three[0] in RUN_TERMINAL_STATUSES


# -- time-advanced runs ------------------------------------------------------------------------------


def test_time_advanced_run_follows_the_clock_not_the_polls(clock: FakeClock, runs: RunApi) -> None:
    run = runs.create(ASST_DEMO, metadata=TIME)
    assert runs.poll(run, 3) == ["queued"] * 3
    clock.advance(9.9)
    assert runs.get(run)["status"] == "queued"
    clock.advance(0.1)
    assert runs.get(run)["status"] == "in_progress"
    clock.advance(500)
    done = runs.get(run)
    assert done["status"] == "completed"
    assert done["started_at"] == done["created_at"] + 10
    assert done["completed_at"] == done["created_at"] + 20  # when it was due, not when it was seen
    assert done["metadata"] == TIME


def test_listing_steps_catches_a_time_advanced_run_up(clock: FakeClock, runs: RunApi) -> None:
    run = runs.create(ASST_DEMO, metadata=TIME)
    assert runs.steps(run) == []
    clock.advance(10)
    (step,) = runs.steps(run)
    assert step["created_at"] == run["created_at"] + 10
    clock.advance(10)
    assert runs.steps(run)[0]["status"] == "completed"


def test_time_advanced_tools_run_waits_for_outputs_then_resumes_on_the_clock(
    clock: FakeClock, runs: RunApi
) -> None:
    run = runs.create(ASST_TOOLS, metadata=TIME)
    clock.advance(1000)
    waiting = runs.get(run)
    assert waiting["status"] == "requires_action"
    call_id = waiting["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
    assert runs.submit(run, [{"tool_call_id": call_id, "output": "x"}]).json()["status"] == "queued"
    assert runs.get(run)["status"] == "queued"
    clock.advance(10)
    assert runs.get(run)["status"] == "in_progress"
    clock.advance(10)
    assert runs.get(run)["status"] == "completed"


def test_time_advanced_cancel_ends_one_interval_later(clock: FakeClock, runs: RunApi) -> None:
    run = runs.create(ASST_SLOW, metadata=TIME)
    clock.advance(15)
    assert runs.cancel(run).json()["status"] == "cancelling"
    assert runs.get(run)["status"] == "cancelling"
    clock.advance(10)
    cancelled = runs.get(run)
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] == cancelled["created_at"] + 25


def test_time_advanced_run_on_the_default_interval(clock: FakeClock, runs: RunApi) -> None:
    run = runs.create(ASST_DEMO, metadata={ADVANCE_KEY: "time"})
    clock.advance(1)
    assert runs.get(run)["status"] == "in_progress"


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({ADVANCE_KEY: "sometimes"}, f"metadata.{ADVANCE_KEY}"),
        ({ADVANCE_KEY: "time", SECONDS_KEY: "0"}, f"metadata.{SECONDS_KEY}"),
        ({ADVANCE_KEY: "time", SECONDS_KEY: "soon"}, f"metadata.{SECONDS_KEY}"),
    ],
)
def test_bad_advance_metadata_is_a_400(
    server: EmulatorServer, client: httpx.Client, metadata: dict[str, str], param: str
) -> None:
    response = client.post("/threads/runs", json={"assistant_id": ASST_DEMO, "metadata": metadata})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert server.state.runs_created == 0


# -- custom scripts ----------------------------------------------------------------------------------


def test_a_custom_script_for_an_assistant(server: EmulatorServer, runs: RunApi) -> None:
    server.state.add_run_script(
        "asst_two_calls",
        [
            Stage("queued"),
            Stage("in_progress", repeat=2),
            Stage("requires_action", tool_calls=(FunctionCall("a", "{}"), FunctionCall("b", '{"x":1}'))),
            Stage("in_progress", close=True, message=True),
            Stage("completed"),
        ],
    )
    run = runs.create("asst_two_calls")
    assert runs.poll(run, 3) == ["in_progress", "in_progress", "requires_action"]
    calls = runs.get(run)["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["a", "b"]
    first_only = runs.submit(run, [{"tool_call_id": calls[0]["id"], "output": "1"}])
    assert first_only.status_code == 400
    assert calls[1]["id"] in first_only.json()["error"]["message"]
    outputs = [{"tool_call_id": call["id"], "output": name} for call, name in zip(calls, "AB", strict=True)]
    assert runs.submit(run, outputs).json()["status"] == "in_progress"
    assert runs.get(run)["status"] == "completed"
    tool_step, _message_step = runs.steps(run)
    assert [c["function"]["output"] for c in tool_step["step_details"]["tool_calls"]] == ["A", "B"]


def test_a_custom_time_advanced_script(server: EmulatorServer, clock: FakeClock, runs: RunApi) -> None:
    server.state.add_run_script(
        "asst_timed", [Stage("queued"), Stage("failed")], advance="time", seconds_per_status=5
    )
    run = runs.create("asst_timed")
    assert runs.get(run)["status"] == "queued"
    clock.advance(5)
    assert runs.get(run)["status"] == "failed"


def test_a_custom_script_can_replace_a_builtin_until_reset(server: EmulatorServer, runs: RunApi) -> None:
    server.state.add_run_script(ASST_DEMO, [Stage("queued"), Stage("expired")])
    assert runs.poll(runs.create(ASST_DEMO), 1) == ["expired"]
    server.state.reset()
    assert runs.poll(runs.create(ASST_DEMO), 1) == ["in_progress"]


@pytest.mark.parametrize(
    "stages",
    [
        [],
        [Stage("queued")],
        [Stage("completed"), Stage("completed")],
        [Stage("queued"), Stage("dancing"), Stage("completed")],  # type: ignore[arg-type]
        [Stage("queued", repeat=0), Stage("completed")],
        [Stage("requires_action", tool_calls=()), Stage("completed")],
    ],
    ids=["empty", "no-terminal", "terminal-twice", "unknown-status", "repeat-0", "no-tool-calls"],
)
def test_invalid_scripts_are_rejected(server: EmulatorServer, stages: list[Stage]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        server.state.add_run_script("asst_bad", stages)
