"""Retrieving run steps: advancement per poll and per clock time, and the live JSON shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_portkey.emulator import (
    STEP_CANCELLED,
    STEP_COMPLETES,
    STEP_EXPIRED,
    STEP_FAILS,
    STEP_INSTANT,
    STEP_MAP_IDS,
    STEP_TOOL_CALLS,
    EmulatorServer,
)
from tests.emulator.conftest import FakeClock

INCLUDE = "step_details.tool_calls[*].file_search.results[*].content"


def statuses(client: httpx.Client, path: str, polls: int) -> list[str]:
    return [client.get(path).json()["status"] for _ in range(polls)]


def test_poll_advanced_step_moves_one_status_per_get_and_sticks(
    client: httpx.Client, step_path: Callable[..., str]
) -> None:
    assert statuses(client, step_path(STEP_COMPLETES), 5) == ["in_progress"] * 2 + ["completed"] * 3


@pytest.mark.parametrize(("step_id", "polls"), list(zip(STEP_MAP_IDS, (1, 2, 3), strict=True)))
def test_map_steps_complete_after_their_number_of_polls(
    client: httpx.Client, step_path: Callable[..., str], step_id: str, polls: int
) -> None:
    assert statuses(client, step_path(step_id), polls + 1) == ["in_progress"] * polls + ["completed"]


def test_list_calls_do_not_advance_a_step(client: httpx.Client, step_path: Callable[..., str]) -> None:
    def listed() -> str:
        page: dict[str, Any] = client.get(step_path(), params={"limit": 100}).json()
        return str(next(step["status"] for step in page["data"] if step["id"] == STEP_COMPLETES))

    assert [listed(), listed()] == ["in_progress", "in_progress"]
    assert statuses(client, step_path(STEP_COMPLETES), 3) == ["in_progress", "in_progress", "completed"]
    assert listed() == "completed"


def test_time_advanced_step_follows_the_injected_clock(
    server: EmulatorServer, clock: FakeClock, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_step(
        "thread_t",
        "run_t",
        "step_t",
        statuses=("in_progress", "in_progress", "failed"),
        advance="time",
        seconds_per_status=10,
    )
    path = step_path("step_t", "thread_t", "run_t")
    seen = []
    for elapsed in (0, 9.9, 10, 19.9, 20, 500):
        clock.now = 1000.0 + elapsed
        seen.append(client.get(path).json()["status"])
    assert seen == ["in_progress"] * 4 + ["failed"] * 2


def test_time_advanced_step_ignores_polls(
    server: EmulatorServer, clock: FakeClock, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_step("thread_t", "run_t", "step_t", advance="time", seconds_per_status=5)
    path = step_path("step_t", "thread_t", "run_t")
    assert statuses(client, path, 3) == ["in_progress"] * 3
    clock.advance(5)
    assert client.get(path).json()["status"] == "completed"


def test_terminal_timestamp_of_a_time_advanced_step_is_when_it_ended(
    server: EmulatorServer, clock: FakeClock, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_step("thread_t", "run_t", "step_t", advance="time", seconds_per_status=30)
    clock.advance(3600)
    step = client.get(step_path("step_t", "thread_t", "run_t")).json()
    assert step["completed_at"] == step["created_at"] + 30


def test_in_progress_step_has_the_live_shape(client: httpx.Client, step_path: Callable[..., str]) -> None:
    step = client.get(step_path(STEP_COMPLETES)).json()
    assert step["object"] == "thread.run.step"
    assert step["status"] == "in_progress"
    assert step["usage"] is None
    assert step["last_error"] is None
    assert step["completed_at"] is step["failed_at"] is step["cancelled_at"] is None
    assert step["expires_at"] == step["created_at"] + 600
    assert "expired_at" not in step
    assert "metadata" not in step
    assert step["step_details"]["type"] == "message_creation"
    assert step["step_details"]["message_creation"]["message_id"].startswith("msg_")


def final(client: httpx.Client, path: str) -> dict[str, Any]:
    """The step after enough polls to reach its last status."""
    for _ in range(5):
        body: dict[str, Any] = client.get(path).json()
    return body


@pytest.mark.parametrize(
    ("step_id", "status", "stamped"),
    [
        (STEP_COMPLETES, "completed", "completed_at"),
        (STEP_FAILS, "failed", "failed_at"),
        (STEP_CANCELLED, "cancelled", "cancelled_at"),
        (STEP_EXPIRED, "expired", "expires_at"),
    ],
)
def test_terminal_step_sets_only_its_own_timestamp_and_usage(
    client: httpx.Client, step_path: Callable[..., str], step_id: str, status: str, stamped: str
) -> None:
    step = final(client, step_path(step_id))
    assert step["status"] == status
    assert step["usage"] == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    assert step[stamped] is not None
    assert step[stamped] >= step["created_at"]
    others = {"completed_at", "failed_at", "cancelled_at"} - {stamped}
    assert all(step[field] is None for field in others)


def test_failed_step_has_the_default_server_error(
    client: httpx.Client, step_path: Callable[..., str]
) -> None:
    step = final(client, step_path(STEP_FAILS))
    assert step["last_error"] == {"code": "server_error", "message": "Sorry, something went wrong."}


def test_failed_step_shows_a_scripted_last_error(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    error = {"code": "rate_limit_exceeded", "message": "You exceeded your current quota."}
    server.state.add_step("thread_x", "run_x", "step_x", statuses=("failed",), last_error=error)
    assert client.get(step_path("step_x", "thread_x", "run_x")).json()["last_error"] == error


def test_non_failed_steps_have_no_last_error(client: httpx.Client, step_path: Callable[..., str]) -> None:
    assert final(client, step_path(STEP_CANCELLED))["last_error"] is None


def test_tool_calls_step_has_a_completed_function_call(
    client: httpx.Client, step_path: Callable[..., str]
) -> None:
    step = final(client, step_path(STEP_TOOL_CALLS))
    assert step["type"] == "tool_calls"
    (call,) = step["step_details"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["output"] == "70 degrees and sunny."


def test_instant_step_is_completed_on_first_get(client: httpx.Client, step_path: Callable[..., str]) -> None:
    step = client.get(step_path(STEP_INSTANT)).json()
    assert step["status"] == "completed"
    assert step["completed_at"] is not None


def test_extra_fields_add_unknown_keys_and_override_known_ones(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    details = {"type": "tool_calls", "tool_calls": [{"id": "call_1", "type": "retrieval", "retrieval": {}}]}
    server.state.add_step(
        "thread_x",
        "run_x",
        "step_x",
        type="tool_calls",
        step_details=details,
        extra_fields={"metadata": {}, "expired_at": None, "brand_new": [1, 2]},
    )
    step = client.get(step_path("step_x", "thread_x", "run_x")).json()
    assert step["step_details"] == details
    assert step["metadata"] == {}
    assert step["expired_at"] is None
    assert step["brand_new"] == [1, 2]


def test_readding_a_step_replaces_its_script(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_step("thread_demo", "run_demo", STEP_INSTANT, statuses=("in_progress",))
    assert client.get(step_path(STEP_INSTANT)).json()["status"] == "in_progress"


@pytest.mark.parametrize(
    ("thread_id", "run_id", "step_id"),
    [
        ("thread_demo", "run_demo", "step_nope"),
        ("thread_demo", "run_nope", STEP_INSTANT),
        ("thread_nope", "run_demo", STEP_INSTANT),
    ],
    ids=["step", "run", "thread"],
)
def test_unknown_step_run_or_thread_is_404_no_run_step_found(
    client: httpx.Client, step_path: Callable[..., str], thread_id: str, run_id: str, step_id: str
) -> None:
    response = client.get(step_path(step_id, thread_id, run_id))
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": f"No run step found with id '{step_id}'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_unknown_url_is_404_invalid_url(client: httpx.Client) -> None:
    response = client.post("/threads/thread_demo/runs/run_demo/steps/step_instant")
    assert response.status_code == 404
    assert (
        response.json()["error"]["message"]
        == "Invalid URL (POST /v1/threads/thread_demo/runs/run_demo/steps/step_instant)"
    )


def test_the_file_search_include_is_accepted(client: httpx.Client, step_path: Callable[..., str]) -> None:
    response = client.get(step_path(STEP_INSTANT), params={"include[]": INCLUDE})
    assert response.status_code == 200


def test_an_unknown_include_is_400_invalid_value(client: httpx.Client, step_path: Callable[..., str]) -> None:
    response = client.get(step_path(STEP_INSTANT), params=[("include[]", INCLUDE), ("include[]", "usage")])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "include[1]"
    assert response.json()["error"]["code"] == "invalid_value"
