"""PortkeyHook's run methods against the emulator: create, get, cancel, submit tool outputs, bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_portkey.emulator import ASST_DEMO, ASST_SLOW, ASST_TOOLS, EmulatorServer
from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyClientError,
    PortkeyConfigurationError,
    PortkeyNotFoundError,
)
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models import Run, RunStatus
from tests.conftest import PortkeyConnection

USER_MESSAGE = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture
def hook(portkey_conn: PortkeyConnection) -> Iterator[PortkeyHook]:
    with PortkeyHook() as portkey_hook:
        yield portkey_hook


def api_requests(emulator: EmulatorServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in emulator.state.requests]


def poll_until(hook: PortkeyHook, run: Run, status: RunStatus, polls: int = 10) -> Run:
    for _ in range(polls):
        if run.status is status:
            return run
        run = hook.get_run(run.thread_id, run.id)
    raise AssertionError(f"run never became {status}: {run.describe()}")


def test_create_thread_and_run_returns_the_queued_run_exactly_as_sent(
    hook: PortkeyHook, emulator: EmulatorServer, mocker: Any
) -> None:
    sent = mocker.spy(hook.session, "request")
    run = hook.create_thread_and_run(
        ASST_DEMO,
        thread={"messages": [USER_MESSAGE]},
        metadata={"ticket": "42"},
        options={"model": "gpt-4o-mini"},
    )
    assert run.status is RunStatus.QUEUED
    assert (run.assistant_id, run.model, run.metadata) == (ASST_DEMO, "gpt-4o-mini", {"ticket": "42"})
    assert run.to_json() == sent.spy_return.json()
    assert api_requests(emulator) == [("POST", "/v1/threads/runs")]
    assert emulator.state.runs_created == 1


def test_create_thread_and_run_sends_the_body_as_the_api_names_it(
    hook: PortkeyHook, emulator: EmulatorServer, mocker: Any
) -> None:
    sent = mocker.spy(hook.session, "request")
    hook.create_thread_and_run(
        ASST_DEMO,
        thread={"messages": [USER_MESSAGE]},
        options={"instructions": "Be brief.", "temperature": None},
    )
    body = sent.call_args.kwargs["json"]
    assert body == {
        "instructions": "Be brief.",
        "assistant_id": ASST_DEMO,
        "thread": {"messages": [USER_MESSAGE]},
    }


def test_create_run_on_an_existing_thread_then_follow_it_to_completed(hook: PortkeyHook) -> None:
    first = hook.create_thread_and_run(ASST_DEMO)
    poll_until(hook, first, RunStatus.COMPLETED)
    second = hook.create_run(first.thread_id, ASST_DEMO, additional_messages=[USER_MESSAGE])
    assert second.thread_id == first.thread_id
    assert second.id != first.id
    done = poll_until(hook, second, RunStatus.COMPLETED)
    assert done.succeeded
    assert done.is_terminal


def test_tool_outputs_continue_a_run_that_requires_action(hook: PortkeyHook) -> None:
    run = poll_until(hook, hook.create_thread_and_run(ASST_TOOLS), RunStatus.REQUIRES_ACTION)
    [call] = run.required_tool_calls
    assert call.function.name == "get_weather"
    resumed = hook.submit_tool_outputs(run.thread_id, run.id, [{"tool_call_id": call.id, "output": "18C"}])
    assert resumed.status is RunStatus.QUEUED
    done = poll_until(hook, resumed, RunStatus.COMPLETED)
    steps = hook.list_run_steps(done.thread_id, done.id)
    tool_step = next(step for step in steps if step.type == "tool_calls")
    assert tool_step.to_json()["step_details"]["tool_calls"][0]["function"]["output"] == "18C"


def test_tool_outputs_may_be_a_mapping_of_call_id_to_output(hook: PortkeyHook) -> None:
    run = poll_until(hook, hook.create_thread_and_run(ASST_TOOLS), RunStatus.REQUIRES_ACTION)
    resumed = hook.submit_tool_outputs(run.thread_id, run.id, {c.id: "18C" for c in run.required_tool_calls})
    assert resumed.status is RunStatus.QUEUED


def test_tool_outputs_for_the_wrong_call_are_the_apis_client_error(hook: PortkeyHook) -> None:
    run = poll_until(hook, hook.create_thread_and_run(ASST_TOOLS), RunStatus.REQUIRES_ACTION)
    with pytest.raises(PortkeyClientError) as caught:
        hook.submit_tool_outputs(run.thread_id, run.id, {"call_unknown": "x"})
    assert "HTTP 400" in str(caught.value)
    assert "call_unknown" in str(caught.value)


def test_cancel_moves_a_run_through_cancelling_to_cancelled(hook: PortkeyHook) -> None:
    run = hook.create_thread_and_run(ASST_SLOW)
    cancelling = hook.cancel_run(run.thread_id, run.id)
    assert cancelling.status is RunStatus.CANCELLING
    assert not cancelling.is_terminal
    cancelled = poll_until(hook, cancelling, RunStatus.CANCELLED)
    assert cancelled.is_terminal
    assert not cancelled.succeeded


def test_unknown_run_is_not_found(hook: PortkeyHook) -> None:
    run = hook.create_thread_and_run(ASST_DEMO)
    with pytest.raises(PortkeyNotFoundError) as caught:
        hook.get_run(run.thread_id, "run_missing")
    assert f"GET /threads/{run.thread_id}/runs/run_missing" in str(caught.value)


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("create_thread_and_run", {"assistant_id": None}, "assistant_id"),
    ("create_thread_and_run", {"assistant_id": "None"}, "assistant_id"),
    ("create_thread_and_run", {"assistant_id": "../runs"}, "assistant_id"),
    ("create_thread_and_run", {"assistant_id": "a", "metadata": {"k": 1}}, "metadata['k']"),
    ("create_thread_and_run", {"assistant_id": "a", "metadata": {"k": "v" * 513}}, "metadata['k']"),
    (
        "create_thread_and_run",
        {"assistant_id": "a", "metadata": {str(i): "v" for i in range(17)}},
        "17 pairs",
    ),
    ("create_thread_and_run", {"assistant_id": "a", "metadata": "k=v"}, "metadata"),
    (
        "create_thread_and_run",
        {"assistant_id": "a", "thread": {"messages": [{"role": "system", "content": "x"}]}},
        "thread.messages[0].role",
    ),
    (
        "create_thread_and_run",
        {"assistant_id": "a", "thread": {"messages": [{"role": "user", "content": ""}]}},
        "thread.messages[0].content",
    ),
    ("create_thread_and_run", {"assistant_id": "a", "thread": "hello"}, "thread"),
    ("create_thread_and_run", {"assistant_id": "a", "options": {"stream": True}}, "stream"),
    ("create_thread_and_run", {"assistant_id": "a", "options": {"tools": {1, 2}}}, "plain JSON"),
    ("create_thread_and_run", {"assistant_id": "a", "options": {"temperature": float("nan")}}, "plain JSON"),
    ("create_run", {"thread_id": "", "assistant_id": "a"}, "thread_id"),
    (
        "create_run",
        {"thread_id": "t", "assistant_id": "a", "additional_messages": "hi"},
        "additional_messages",
    ),
    ("create_run", {"thread_id": "t", "assistant_id": "a", "options": {"thread": {}}}, "options['thread']"),
    ("get_run", {"thread_id": "t", "run_id": "None"}, "run_id"),
    ("cancel_run", {"thread_id": "t/../x", "run_id": "r"}, "thread_id"),
    ("submit_tool_outputs", {"thread_id": "t", "run_id": "r", "tool_outputs": []}, "must not be empty"),
    ("submit_tool_outputs", {"thread_id": "t", "run_id": "r", "tool_outputs": "42"}, "tool_outputs"),
    (
        "submit_tool_outputs",
        {"thread_id": "t", "run_id": "r", "tool_outputs": [{"tool_call_id": "c", "output": {"t": 18}}]},
        "tool_outputs[0].output",
    ),
    (
        "submit_tool_outputs",
        {"thread_id": "t", "run_id": "r", "tool_outputs": [{"tool_call_id": None, "output": "x"}]},
        "tool_outputs[0].tool_call_id",
    ),
    (
        "submit_tool_outputs",
        {"thread_id": "t", "run_id": "r", "tool_outputs": [{"tool_call_id": "c", "output": "x", "extra": 1}]},
        "'extra'",
    ),
    (
        "submit_tool_outputs",
        {
            "thread_id": "t",
            "run_id": "r",
            "tool_outputs": [{"tool_call_id": "c", "output": "x"}, {"tool_call_id": "c", "output": "y"}],
        },
        "tool_outputs[1].tool_call_id",
    ),
]


@pytest.mark.parametrize(("method", "arguments", "named"), BAD_CALLS, ids=[c[2] for c in BAD_CALLS])
def test_bad_input_is_a_value_error_naming_the_field_before_any_request(
    hook: PortkeyHook, emulator: EmulatorServer, method: str, arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(PortkeyConfigurationError) as caught:
        getattr(hook, method)(**arguments)
    assert isinstance(caught.value, ValueError)
    assert named in str(caught.value)
    assert emulator.state.requests == []


def test_bad_id_is_an_invalid_id_error(hook: PortkeyHook) -> None:
    with pytest.raises(InvalidIdError):
        hook.get_run("thread_1", "")


def test_task_metadata_is_merged_under_the_connections_and_the_trace_id_is_sent(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    portkey_conn.set(monkeypatch, metadata={"_user": "airflow", "dag_id": "pinned"})
    task = {"dag_id": "my_dag", "task_id": "start", "run_id": "manual__1"}
    with PortkeyHook(trace_id="airflow/my_dag/manual__1/start/try-1", metadata=task) as hook:
        hook.create_thread_and_run(ASST_DEMO)
    [request] = emulator.state.requests
    assert request.headers["x-portkey-trace-id"] == "airflow/my_dag/manual__1/start/try-1"
    assert json.loads(request.headers["x-portkey-metadata"]) == {
        "dag_id": "pinned",  # the connection's keys win
        "task_id": "start",
        "run_id": "manual__1",
        "_user": "airflow",
    }
