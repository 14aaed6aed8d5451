"""Bad POST bodies on the run endpoints: a 400 upstream-shaped error naming the field, nothing created."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from airflow_provider_portkey.emulator import ASST_DEMO, ASST_TOOLS, EmulatorServer
from tests.emulator.conftest import RunApi

OK = {"assistant_id": ASST_DEMO}


@pytest.mark.parametrize(
    ("body", "param", "code", "message"),
    [
        ({}, "assistant_id", "missing_required_parameter", "Missing required parameter: 'assistant_id'."),
        (
            {"assistant_id": 7},
            "assistant_id",
            "invalid_type",
            "Invalid type for 'assistant_id': expected a string, but got an integer instead.",
        ),
        ({**OK, "colour": "red"}, "colour", "unknown_parameter", "Unknown parameter: 'colour'."),
        ({**OK, "reasoning_effort": "low"}, "reasoning_effort", "unknown_parameter", None),
        ({**OK, "thread": []}, "thread", "invalid_type", None),
        ({**OK, "thread": {"messages": "hi"}}, "thread.messages", "invalid_type", None),
        ({**OK, "thread": {"messages": [{"content": "hi"}]}}, "thread.messages[0].role", None, None),
        ({**OK, "thread": {"messages": [{"role": "user"}]}}, "thread.messages[0].content", None, None),
        (
            {**OK, "thread": {"messages": [{"role": "system", "content": "x"}]}},
            "thread.messages[0].role",
            "invalid_value",
            "Invalid value: 'system'. Supported values are: 'user' and 'assistant'.",
        ),
        ({**OK, "thread": {"colour": 1}}, "thread.colour", "unknown_parameter", None),
        (
            {**OK, "metadata": {"n": 1}},
            "metadata.n",
            "invalid_type",
            "Invalid type for 'metadata.n': expected a string, but got an integer instead.",
        ),
        (
            {**OK, "metadata": {str(i): "v" for i in range(17)}},
            "metadata",
            "object_above_max_properties",
            None,
        ),
        ({**OK, "metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length", None),
        ({**OK, "metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65, "string_above_max_length", None),
        ({**OK, "tools": [{"type": "retrieval"}]}, "tools[0].type", "invalid_value", None),
        ({**OK, "tools": [{"type": "function"}]}, "tools[0].function", "missing_required_parameter", None),
        ({**OK, "tools": {"type": "function"}}, "tools", "invalid_type", None),
        ({**OK, "temperature": "hot"}, "temperature", "invalid_type", None),
        ({**OK, "temperature": 2.5}, "temperature", "decimal_above_max_value", None),
        ({**OK, "top_p": -0.1}, "top_p", "decimal_below_min_value", None),
        ({**OK, "max_prompt_tokens": 10}, "max_prompt_tokens", "integer_below_min_value", None),
        ({**OK, "max_completion_tokens": 300.5}, "max_completion_tokens", "invalid_type", None),
        ({**OK, "parallel_tool_calls": "yes"}, "parallel_tool_calls", "invalid_type", None),
        (
            {**OK, "tool_choice": 3},
            "tool_choice",
            "invalid_type",
            "Invalid type for 'tool_choice': expected one of a string or an object, "
            "but got an integer instead.",
        ),
        ({**OK, "stream": True}, "stream", None, None),
    ],
)
def test_bad_create_thread_and_run_bodies(
    server: EmulatorServer,
    client: httpx.Client,
    body: dict[str, Any],
    param: str,
    code: str | None,
    message: str | None,
) -> None:
    response = client.post("/threads/runs", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    if message:
        assert error["message"] == message
    assert server.state.runs_created == 0


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_a_400(
    server: EmulatorServer, client: httpx.Client, content: bytes
) -> None:
    response = client.post("/threads/runs", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] is None
    assert server.state.runs_created == 0


def free_thread(runs: RunApi) -> str:
    """A thread whose first run has ended, so another run may start on it."""
    run = runs.create()
    runs.poll(run, 2)
    return str(run["thread_id"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**OK, "thread": {}}, "thread"),
        ({**OK, "tool_resources": {}}, "tool_resources"),
        ({**OK, "additional_messages": [{"role": "user", "content": 1}]}, "additional_messages[0].content"),
        ({**OK, "additional_messages": [{"role": "tool", "content": "x"}]}, "additional_messages[0].role"),
    ],
)
def test_bad_create_run_bodies(
    server: EmulatorServer, runs: RunApi, client: httpx.Client, body: dict[str, Any], param: str
) -> None:
    thread_id = free_thread(runs)
    response = client.post(f"/threads/{thread_id}/runs", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert server.state.runs_created == 1


def test_create_run_accepts_its_own_fields(runs: RunApi) -> None:
    body = {
        "reasoning_effort": "low",
        "additional_instructions": "Also be kind.",
        "additional_messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "metadata": {"k": "v"},
    }
    response = runs.create_on(free_thread(runs), ASST_DEMO, **body)
    assert response.status_code == 200, response.text
    assert response.json()["reasoning_effort"] == "low"
    assert response.json()["metadata"] == {"k": "v"}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "tool_outputs", "missing_required_parameter"),
        ({"tool_outputs": "x"}, "tool_outputs", "invalid_type"),
        ({"tool_outputs": ["x"]}, "tool_outputs[0]", "invalid_type"),
        ({"tool_outputs": [{"output": "x"}]}, "tool_outputs[0].tool_call_id", "missing_required_parameter"),
        ({"tool_outputs": [{"tool_call_id": 1}]}, "tool_outputs[0].tool_call_id", "invalid_type"),
        ({"tool_outputs": [{"tool_call_id": "c", "output": 5}]}, "tool_outputs[0].output", "invalid_type"),
        ({"tool_outputs": [{"tool_call_id": "c", "extra": 5}]}, "tool_outputs[0].extra", "unknown_parameter"),
        ({"tool_outputs": [], "colour": "red"}, "colour", "unknown_parameter"),
    ],
)
def test_bad_submit_tool_outputs_bodies(
    runs: RunApi, client: httpx.Client, body: dict[str, Any], param: str, code: str
) -> None:
    run = runs.create(ASST_TOOLS)
    runs.poll(run, 2)
    response = client.post(runs.path(run, "/submit_tool_outputs"), json=body)
    assert response.status_code == 400
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)
    assert runs.get(run)["status"] == "requires_action"


def test_an_output_may_be_left_out(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    call_id = [runs.get(run) for _ in range(2)][-1]["required_action"]["submit_tool_outputs"]["tool_calls"][
        0
    ]["id"]
    assert runs.submit(run, [{"tool_call_id": call_id}]).status_code == 200
    assert runs.steps(run)[0]["step_details"]["tool_calls"][0]["function"]["output"] == ""
