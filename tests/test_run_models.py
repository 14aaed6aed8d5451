"""The Run model: lenient, lossless, typed required actions, statuses that know when they are final."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from airflow_provider_portkey.models import (
    TERMINAL_RUN_STATUSES,
    UNSUCCESSFUL_RUN_STATUSES,
    RequiredToolCall,
    Run,
    RunStatus,
)

#: A run as the spec's example shows it (RunObject), with ``requires_action`` and a function call.
REQUIRES_ACTION: dict[str, Any] = {
    "id": "run_abc123",
    "object": "thread.run",
    "created_at": 1699063290,
    "assistant_id": "asst_abc123",
    "thread_id": "thread_abc123",
    "status": "requires_action",
    "started_at": 1699063290,
    "expires_at": 1699063890,
    "cancelled_at": None,
    "failed_at": None,
    "completed_at": None,
    "required_action": {
        "type": "submit_tool_outputs",
        "submit_tool_outputs": {
            "tool_calls": [
                {
                    "id": "call_001",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ]
        },
    },
    "last_error": None,
    "model": "gpt-4o",
    "instructions": None,
    "incomplete_details": None,
    "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    "metadata": {},
    "usage": None,
    "temperature": 1.0,
    "top_p": 1.0,
    "max_prompt_tokens": 1000,
    "max_completion_tokens": 1000,
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "response_format": "auto",
    "tool_choice": "auto",
    "parallel_tool_calls": True,
}


def run_json(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(REQUIRES_ACTION)
    payload.update(changes)
    return payload


def test_required_tool_calls_are_typed() -> None:
    run = Run.from_api(REQUIRES_ACTION)
    assert run.status is RunStatus.REQUIRES_ACTION
    assert run.requires_action
    [call] = run.required_tool_calls
    assert isinstance(call, RequiredToolCall)
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "call_001",
        "get_weather",
        {"city": "Paris"},
    )
    assert "waiting for tool outputs (get_weather)" in run.describe()


def test_to_json_is_exactly_what_the_api_sent_unknown_fields_included() -> None:
    payload = run_json(future_field={"nested": [1, 2.5, None]}, temperature=1)
    run = Run.from_api(payload)
    assert run.to_json() == payload
    assert json.dumps(run.to_json()) == json.dumps(payload)  # same key order, same number forms
    assert run.model_extra is not None
    assert run.model_extra["future_field"] == {"nested": [1, 2.5, None]}


def test_to_json_is_a_copy_the_caller_cannot_use_to_change_the_run() -> None:
    run = Run.from_api(REQUIRES_ACTION)
    run.to_json()["status"] = "completed"
    assert run.to_json()["status"] == "requires_action"


def test_minimal_run_without_optional_fields_parses() -> None:
    run = Run.from_api({"id": "run_1", "object": "thread.run", "status": "queued", "thread_id": "thread_1"})
    assert (run.status, run.metadata, run.usage, run.required_tool_calls) == (
        RunStatus.QUEUED,
        None,
        None,
        [],
    )


@pytest.mark.parametrize("status", list(RunStatus))
def test_only_cancelled_failed_completed_incomplete_and_expired_are_terminal(status: RunStatus) -> None:
    expected = status.value in {"cancelled", "failed", "completed", "incomplete", "expired"}
    assert status.is_terminal is expected
    assert (status in TERMINAL_RUN_STATUSES) is expected
    assert status.succeeded is (status is RunStatus.COMPLETED)


def test_requires_action_is_not_terminal_and_no_unsuccessful_status_succeeds() -> None:
    assert not RunStatus.REQUIRES_ACTION.is_terminal
    assert {s.value for s in UNSUCCESSFUL_RUN_STATUSES} == {"cancelled", "failed", "incomplete", "expired"}


def test_failed_run_describes_its_last_error_and_incomplete_its_reason() -> None:
    failed = Run.from_api(
        run_json(
            status="failed",
            required_action=None,
            last_error={"code": "server_error", "message": "Sorry, something went wrong."},
        )
    )
    assert failed.describe().endswith("is failed: server_error: Sorry, something went wrong.")
    assert failed.required_tool_calls == []
    incomplete = Run.from_api(
        run_json(
            status="incomplete", required_action=None, incomplete_details={"reason": "max_completion_tokens"}
        )
    )
    assert incomplete.describe().endswith("is incomplete: max_completion_tokens")


def test_required_action_of_an_unknown_type_is_kept_not_refused() -> None:
    run = Run.from_api(run_json(required_action={"type": "future_action", "future_action": {"x": 1}}))
    assert run.required_tool_calls == []
    assert run.to_json()["required_action"] == {"type": "future_action", "future_action": {"x": 1}}


@pytest.mark.parametrize(
    "changes",
    [{"object": "thread.run.step"}, {"status": ""}, {"id": None}, {"thread_id": None}],
    ids=["wrong-object", "empty-status", "no-id", "no-thread"],
)
def test_json_that_is_not_a_run_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Run.from_api(run_json(**changes))


@given(
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda key: key not in REQUIRES_ACTION),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=6,
        ),
        max_size=4,
    ),
    status=st.sampled_from([status.value for status in RunStatus]),
)
def test_any_extra_fields_survive_the_round_trip(extra: dict[str, Any], status: str) -> None:
    payload = {**run_json(status=status), **extra}
    assert Run.from_api(payload).to_json() == payload
