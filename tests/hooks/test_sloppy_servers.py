"""PortkeyHook against answers that bend the spec, as self-hosted OpenAI-compatible servers send them.

Each answer is served over a real socket by the emulator (scripted fields or a verbatim page). The
official SDK reads all of these; so must the hook: only ``id`` and ``status`` decide whether an
answer is usable, anything else it cannot read is left at its default (with a warning) and the
JSON is handed on exactly as sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.errors import PortkeyBadResponseError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models import (
    CodeInterpreterToolCall,
    FileSearchToolCall,
    RunStepStatus,
    ToolCallsDetails,
)
from tests.conftest import PortkeyConnection
from tests.hooks.support import R, T

STEP = "step_sloppy"


@pytest.fixture
def hook(portkey_conn: PortkeyConnection) -> Iterator[PortkeyHook]:
    with PortkeyHook() as portkey_hook:
        yield portkey_hook


def serve(emulator: EmulatorServer, *, statuses: tuple[str, ...] = ("completed",), **fields: Any) -> None:
    """Script ``STEP`` whose JSON carries ``fields`` exactly as given."""
    emulator.state.add_step(T, R, STEP, statuses=statuses, extra_fields=fields)


def tool_calls(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_calls", "tool_calls": list(calls)}


SLOPPY_ANSWERS: dict[str, dict[str, Any]] = {
    "usage with null completion_tokens": {
        "usage": {"prompt_tokens": 10, "completion_tokens": None, "total_tokens": 10}
    },
    "last_error without message": {"status": "failed", "last_error": {"code": "server_error"}},
    "tool_calls null": {"type": "tool_calls", "step_details": {"type": "tool_calls", "tool_calls": None}},
    "code_interpreter outputs null": {
        "step_details": tool_calls(
            {
                "id": "call_1",
                "type": "code_interpreter",
                "code_interpreter": {"input": "1+1", "outputs": None},
            }
        )
    },
    "file search result without score": {
        "step_details": tool_calls(
            {
                "id": "call_1",
                "type": "file_search",
                "file_search": {"results": [{"file_id": "file_1", "file_name": "a.txt"}]},
            }
        )
    },
    "float created_at": {"created_at": 1710353047.5, "completed_at": 1710353050.25},
    "unknown step status": {"status": "incomplete"},
    "no object field": {"object": None},
    "unreadable metadata and usage": {"metadata": "n/a", "usage": "unknown"},
}


@pytest.mark.parametrize("fields", SLOPPY_ANSWERS.values(), ids=SLOPPY_ANSWERS.keys())
def test_a_sloppy_answer_parses_and_is_handed_on_exactly_as_sent(
    hook: PortkeyHook, emulator: EmulatorServer, fields: dict[str, Any]
) -> None:
    serve(emulator, **fields)
    sent = emulator.state.list_steps(T, R)
    assert sent is not None

    step = hook.get_run_step(T, R, STEP)

    assert step.id == STEP
    assert step.to_json() == next(item for item in sent if item["id"] == STEP)


def test_sloppy_values_read_as_the_sdk_reads_them(hook: PortkeyHook, emulator: EmulatorServer) -> None:
    serve(emulator, **SLOPPY_ANSWERS["usage with null completion_tokens"], created_at=1710353047.5)
    step = hook.get_run_step(T, R, STEP)
    assert step.usage is not None
    assert (step.usage.prompt_tokens, step.usage.completion_tokens) == (10, None)
    assert step.created_at == 1710353047.5


def test_null_lists_read_as_empty_and_a_missing_score_as_none(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    serve(emulator, **SLOPPY_ANSWERS["code_interpreter outputs null"])
    details = hook.get_run_step(T, R, STEP).step_details
    assert isinstance(details, ToolCallsDetails)
    call = details.tool_calls[0]
    assert isinstance(call, CodeInterpreterToolCall)
    assert call.code_interpreter.outputs == []

    serve(emulator, **SLOPPY_ANSWERS["file search result without score"])
    details = hook.get_run_step(T, R, STEP).step_details
    assert isinstance(details, ToolCallsDetails)
    search = details.tool_calls[0]
    assert isinstance(search, FileSearchToolCall)
    assert search.file_search.results is not None
    assert search.file_search.results[0].score is None


def test_an_unknown_status_is_kept_as_its_string_and_is_not_final(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    serve(emulator, statuses=("incomplete",))
    step = hook.get_run_step(T, R, STEP)
    assert step.status == "incomplete"
    assert not isinstance(step.status, RunStepStatus)
    assert step.known_status is None
    assert not step.is_terminal
    assert "is incomplete" in step.describe()


def test_a_failed_step_whose_error_has_no_message_is_still_described(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    serve(emulator, statuses=("failed",), last_error={"code": "server_error"})
    step = hook.get_run_step(T, R, STEP)
    assert step.is_terminal
    assert step.describe().endswith("is failed: server_error: (no message)")


def test_an_unreadable_field_is_warned_about_once_with_its_path_not_failed(
    hook: PortkeyHook, emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    serve(
        emulator,
        step_details=tool_calls(
            {"id": "call_1", "type": "function", "function": {"name": 7, "arguments": "{}"}}
        ),
    )
    caplog.set_level(logging.WARNING, logger="airflow_provider_portkey.models")
    for _ in range(3):
        details = hook.get_run_step(T, R, STEP).step_details
        assert isinstance(details, ToolCallsDetails)
        assert details.tool_calls == []  # the typed view drops what it cannot read ...
    warnings = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_portkey.models"]
    # ... and says where, once per process, as a JSON path (no doubled union tags)
    assert any("tool_calls.0.function.name" in message for message in warnings)
    assert not any("tool_calls.tool_calls" in message for message in warnings)
    assert len(warnings) == len(set(warnings))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"status": None}, "status"),
        ({"status": ""}, "status"),
        ({"id": None}, "id"),
        ({"object": "thread.run"}, "object"),
    ],
)
def test_what_a_sensor_decides_on_stays_strict(
    hook: PortkeyHook, emulator: EmulatorServer, fields: dict[str, Any], field: str
) -> None:
    serve(emulator, **fields)
    with pytest.raises(PortkeyBadResponseError, match=field):
        hook.get_run_step(T, R, STEP)


def test_a_bad_nested_field_is_named_by_its_json_path(hook: PortkeyHook, emulator: EmulatorServer) -> None:
    serve(emulator, status=5)
    with pytest.raises(PortkeyBadResponseError) as caught:
        hook.get_run_step(T, R, STEP)
    assert "status: " in str(caught.value)


# -- pagination as the SDK pages ------------------------------------------------------------------


def page(emulator: EmulatorServer, ids: list[str], **fields: Any) -> dict[str, Any]:
    items = emulator.state.list_steps(T, R)
    assert items is not None
    by_id = {item["id"]: item for item in items}
    return {"object": "list", "data": [by_id[step_id] for step_id in ids], **fields}


def test_pages_without_has_more_are_followed_until_one_comes_back_empty(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    pages = [
        page(emulator, ["step_completes", "step_fails"]),
        page(emulator, ["step_cancelled"]),
        page(emulator, []),
    ]
    for body in pages:
        emulator.state.add_fault("malformed", path_contains="/steps", body=body)

    steps = hook.list_run_steps(T, R, limit=2)

    assert [step.id for step in steps] == ["step_completes", "step_fails", "step_cancelled"]
    afters = [dict(request.query).get("after") for request in emulator.state.requests]
    assert afters == [None, "step_fails", "step_cancelled"]


def test_the_next_page_starts_after_the_last_item_not_after_last_id(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    first = page(emulator, ["step_completes", "step_fails"], last_id="step_bogus", has_more=True)
    emulator.state.add_fault("malformed", path_contains="/steps", body=first)
    emulator.state.add_fault(
        "malformed", path_contains="/steps", body=page(emulator, ["step_expired"], has_more=False)
    )

    steps = hook.list_run_steps(T, R, limit=2)

    assert [step.id for step in steps] == ["step_completes", "step_fails", "step_expired"]
    assert dict(emulator.state.requests[1].query)["after"] == "step_fails"


def test_has_more_false_ends_paging_even_with_a_full_page(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    emulator.state.add_fault(
        "malformed", path_contains="/steps", body=page(emulator, ["step_completes"], has_more=False)
    )
    assert [step.id for step in hook.list_run_steps(T, R, limit=1)] == ["step_completes"]
    assert len(emulator.state.requests) == 1
