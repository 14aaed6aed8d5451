"""PortkeyHook against the local emulator over real sockets: results, retries, errors, bad input, secrets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
import requests

from airflow_provider_portkey.emulator import (
    STEP_COMPLETES,
    STEP_INSTANT,
    STEP_TOOL_CALLS,
    EmulatorServer,
)
from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyAuthError,
    PortkeyBadResponseError,
    PortkeyClientError,
    PortkeyConfigurationError,
    PortkeyConnectionError,
    PortkeyError,
    PortkeyGuardrailError,
    PortkeyLimitExhaustedError,
    PortkeyNotFoundError,
    PortkeyRateLimitError,
    PortkeyRedirectError,
    PortkeyRequestError,
    PortkeyServerError,
)
from airflow_provider_portkey.hooks.base import user_agent
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models import (
    FunctionToolCall,
    MessageCreationDetails,
    RunStep,
    RunStepStatus,
    ToolCallsDetails,
)
from airflow_provider_portkey.protocol import FILE_SEARCH_CONTENT
from tests.conftest import PortkeyConnection
from tests.hooks.support import R, T, use_connection
from tests.support.airflow_compat import AirflowException, redact
from tests.support.secrets import API_KEY, PROVIDER_KEY, VIRTUAL_KEY, assert_no_secret


def step_path(step_id: str, thread_id: str = T, run_id: str = R) -> str:
    return f"/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}"


@pytest.fixture
def hook(portkey_conn: PortkeyConnection) -> Iterator[PortkeyHook]:
    with PortkeyHook() as portkey_hook:
        yield portkey_hook


# -- results ---------------------------------------------------------------------------------------


def test_get_run_step_returns_a_typed_step_exactly_as_sent(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    step = hook.get_run_step(T, R, STEP_INSTANT)
    assert isinstance(step, RunStep)
    assert step.status is RunStepStatus.COMPLETED
    assert (step.id, step.thread_id, step.run_id) == (STEP_INSTANT, T, R)
    assert isinstance(step.step_details, MessageCreationDetails)
    # the emulator renders deterministically: the same step again is the same JSON
    assert step.to_json() == emulator.state.retrieve_step(T, R, STEP_INSTANT)
    assert "expires_at" in step.to_json()
    assert "metadata" not in step.to_json()


def test_get_run_step_follows_a_step_through_its_statuses(hook: PortkeyHook) -> None:
    statuses = [hook.get_run_step(T, R, STEP_COMPLETES).status for _ in range(3)]
    assert statuses == ["in_progress", "in_progress", "completed"]
    assert hook.get_run_step(T, R, STEP_COMPLETES).usage is not None


def test_get_run_step_types_tool_calls(hook: PortkeyHook) -> None:
    hook.get_run_step(T, R, STEP_TOOL_CALLS)
    step = hook.get_run_step(T, R, STEP_TOOL_CALLS)
    assert isinstance(step.step_details, ToolCallsDetails)
    assert isinstance(step.step_details.tool_calls[0], FunctionToolCall)


def test_get_run_step_sends_include(hook: PortkeyHook, emulator: EmulatorServer) -> None:
    hook.get_run_step(T, R, STEP_INSTANT, include=[FILE_SEARCH_CONTENT])
    hook.get_run_step(T, R, STEP_INSTANT, include=FILE_SEARCH_CONTENT)
    first, second = emulator.state.requests
    assert first.query == [("include[]", FILE_SEARCH_CONTENT)]
    assert second.query == [("include[]", FILE_SEARCH_CONTENT)]


@pytest.mark.parametrize("include", [["step_details"], [FILE_SEARCH_CONTENT, "usage"], "content"])
def test_unsupported_include_is_refused_before_any_request(
    hook: PortkeyHook, emulator: EmulatorServer, include: Any
) -> None:
    with pytest.raises(PortkeyConfigurationError, match="include"):
        hook.get_run_step(T, R, STEP_INSTANT, include=include)
    with pytest.raises(PortkeyConfigurationError, match="include"):
        hook.list_run_steps(T, R, include=include)
    assert emulator.state.requests == []


@pytest.fixture
def long_run(emulator: EmulatorServer) -> list[str]:
    """A run with 23 steps, more than two pages of 10."""
    ids = [f"step_{index:02d}" for index in range(23)]
    for step_id in ids:
        emulator.state.add_step("thread_long", "run_long", step_id, statuses=("completed",))
    return ids


def test_list_run_steps_follows_every_page(
    hook: PortkeyHook, emulator: EmulatorServer, long_run: list[str]
) -> None:
    steps = hook.list_run_steps("thread_long", "run_long", limit=10)
    assert [step.id for step in steps] == long_run
    assert all(isinstance(step, RunStep) for step in steps)
    queries = [dict(request.query) for request in emulator.state.requests]
    assert queries == [
        {"limit": "10", "order": "asc"},
        {"limit": "10", "order": "asc", "after": "step_09"},
        {"limit": "10", "order": "asc", "after": "step_19"},
    ]


def test_list_run_steps_in_descending_order_with_include(
    hook: PortkeyHook, emulator: EmulatorServer, long_run: list[str]
) -> None:
    steps = hook.list_run_steps(
        "thread_long", "run_long", limit=20, order="desc", include=[FILE_SEARCH_CONTENT]
    )
    assert [step.id for step in steps] == long_run[::-1]
    assert len(emulator.state.requests) == 2
    for request in emulator.state.requests:
        assert ("include[]", FILE_SEARCH_CONTENT) in request.query
        assert ("order", "desc") in request.query


def test_list_run_steps_of_the_seeded_run_in_one_page(hook: PortkeyHook, emulator: EmulatorServer) -> None:
    steps = hook.list_run_steps(T, R)
    assert STEP_COMPLETES in [step.id for step in steps]
    assert len(emulator.state.requests) == 1


@pytest.mark.parametrize(
    ("limit", "order"), [(0, "asc"), (101, "asc"), (True, "asc"), (10, "up"), (10, None)]
)
def test_bad_list_arguments_are_refused_before_any_request(
    hook: PortkeyHook, emulator: EmulatorServer, limit: Any, order: Any
) -> None:
    with pytest.raises(PortkeyConfigurationError, match="limit" if order == "asc" else "order"):
        hook.list_run_steps(T, R, limit=limit, order=order)
    assert emulator.state.requests == []


def test_list_run_steps_stops_when_the_cursor_does_not_move(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    item = emulator.state.retrieve_step(T, R, STEP_INSTANT)
    page = {
        "object": "list",
        "data": [item],
        "first_id": STEP_INSTANT,
        "last_id": STEP_INSTANT,
        "has_more": True,
    }
    emulator.state.add_fault("malformed", body=page, times=10)
    with pytest.raises(PortkeyBadResponseError, match="cursor stays"):
        hook.list_run_steps(T, R)
    assert len(emulator.state.requests) == 2


# -- headers, session, timeouts ----------------------------------------------------------------------


def test_every_request_carries_the_portkey_headers(hook: PortkeyHook, emulator: EmulatorServer) -> None:
    hook.get_run_step(T, R, STEP_INSTANT)
    hook.list_run_steps(T, R)
    for request in emulator.state.requests:
        headers = request.headers
        assert headers["x-portkey-api-key"] == API_KEY
        assert headers["x-portkey-virtual-key"] == VIRTUAL_KEY
        assert headers["openai-beta"] == "assistants=v2"
        assert headers["accept"] == "application/json"
        assert headers["user-agent"] == user_agent()
        assert "authorization" not in headers


def test_provider_key_goes_out_as_bearer_authorization(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    use_connection(
        monkeypatch,
        portkey_conn,
        extra={"virtual_key": None, "provider": "openai", "provider_api_key": PROVIDER_KEY},
    )
    with PortkeyHook() as hook:
        assert hook.get_run_step(T, R, STEP_INSTANT).succeeded
    (request,) = emulator.state.requests
    assert request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert request.headers["x-portkey-provider"] == "openai"
    assert "x-portkey-virtual-key" not in request.headers


def test_config_custom_host_timeout_trace_and_metadata_reach_the_gateway(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    extra = {
        "virtual_key": None,
        "config": {"retry": {"attempts": 2}},
        "provider": "openai",
        "provider_api_key": PROVIDER_KEY,
        "custom_host": "http://127.0.0.1:9/v1",
        "request_timeout": 5,
        "metadata": {"_user": "airflow"},
        "headers": {"x-portkey-cache-force-refresh": "true"},
    }
    use_connection(monkeypatch, portkey_conn, extra=extra)
    with PortkeyHook(trace_id="dag.task.7") as hook:
        hook.get_run_step(T, R, STEP_INSTANT)
    (request,) = emulator.state.requests
    headers = request.headers
    assert json.loads(headers["x-portkey-config"]) == {"retry": {"attempts": 2}}
    assert headers["x-portkey-custom-host"] == "http://127.0.0.1:9/v1"
    assert headers["x-portkey-request-timeout"] == "5000"
    assert headers["x-portkey-trace-id"] == "dag.task.7"
    assert json.loads(headers["x-portkey-metadata"]) == {"_user": "airflow"}
    assert headers["x-portkey-cache-force-refresh"] == "true"


def test_one_session_keeps_one_connection_alive_across_requests(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    session = hook.session
    hook.get_run_step(T, R, STEP_INSTANT)
    hook.list_run_steps(T, R)
    hook.get_run_step(T, R, STEP_COMPLETES)
    assert hook.session is session
    adapter = session.get_adapter(hook.settings.base_url)
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    pools = adapter.poolmanager.pools
    (pool,) = [pools[key] for key in pools.keys()]  # noqa: SIM118 - a RecentlyUsedContainer
    assert pool.num_connections == 1  # one TCP connection ...
    assert pool.num_requests == 3  # ... for all three requests
    hook.close()
    assert hook._session is None


def test_the_session_does_not_pick_up_credentials_or_cookies_between_requests(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    hook.get_run_step(T, R, STEP_INSTANT)
    hook.get_run_step(T, R, STEP_INSTANT)
    assert not hook.session.headers  # each request carries its own headers, all of them
    assert not hook.session.cookies
    first, second = emulator.state.requests
    assert first.headers == second.headers


def test_read_timeout_is_enforced_then_retried_then_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
    no_jitter: None,
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"read_timeout": 0.2, "max_retries": 1})
    emulator.state.add_fault("delay", delay=5, times=2)
    started = time.monotonic()
    with PortkeyHook() as hook, pytest.raises(PortkeyConnectionError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert time.monotonic() - started < 3
    assert "ReadTimeout" in str(caught.value)
    assert len(emulator.state.requests) == 2
    assert sleeps == [1.0]


def test_connect_timeout_is_enforced_then_retried_then_a_connection_error(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    stalled_port: int,
    sleeps: list[float],
    no_jitter: None,
) -> None:
    use_connection(
        monkeypatch,
        portkey_conn,
        host=f"http://127.0.0.1:{stalled_port}",
        extra={"connect_timeout": 0.2, "max_retries": 1},
    )
    started = time.monotonic()
    with PortkeyHook() as hook, pytest.raises(PortkeyConnectionError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert time.monotonic() - started < 3
    assert "ConnectTimeout" in str(caught.value)
    assert f"http://127.0.0.1:{stalled_port}/v1" in str(caught.value)
    assert sleeps == [1.0]


# -- retries -------------------------------------------------------------------------------------------


RETRIED_FAULTS: list[tuple[str, dict[str, Any], type[PortkeyRequestError]]] = [
    ("reset", {}, PortkeyConnectionError),
    ("truncated", {}, PortkeyConnectionError),
    ("status", {"status": 408}, PortkeyServerError),
    ("status", {"status": 429}, PortkeyRateLimitError),
    ("status", {"status": 500}, PortkeyServerError),
    ("status", {"status": 502}, PortkeyServerError),
    ("status", {"status": 503}, PortkeyServerError),
    ("status", {"status": 504}, PortkeyServerError),
]


def fault_id(fault: tuple[str, dict[str, Any], type[PortkeyRequestError]]) -> str:
    return str(fault[1].get("status", fault[0]))


@pytest.mark.parametrize("fault", RETRIED_FAULTS, ids=fault_id)
def test_transient_failure_is_retried_with_exponential_backoff_then_succeeds(
    hook: PortkeyHook,
    emulator: EmulatorServer,
    sleeps: list[float],
    no_jitter: None,
    fault: tuple[str, dict[str, Any], type[PortkeyRequestError]],
) -> None:
    kind, options, _ = fault
    emulator.state.add_fault(kind, times=2, **options)  # type: ignore[arg-type]
    assert hook.get_run_step(T, R, STEP_INSTANT).succeeded
    assert len(emulator.state.requests) == 3
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize("fault", RETRIED_FAULTS, ids=fault_id)
def test_transient_failure_gives_up_after_max_retries_from_the_connection(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
    no_jitter: None,
    fault: tuple[str, dict[str, Any], type[PortkeyRequestError]],
) -> None:
    kind, options, error_class = fault
    use_connection(monkeypatch, portkey_conn, extra={"max_retries": 4, "max_retry_wait": 5})
    emulator.state.add_fault(kind, times=20, **options)  # type: ignore[arg-type]
    with PortkeyHook() as hook, pytest.raises(error_class) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert type(caught.value) is error_class
    assert caught.value.transient
    assert len(emulator.state.requests) == 5
    assert sleeps == [1.0, 2.0, 4.0, 5.0]  # doubling, capped by max_retry_wait


def test_hook_arguments_set_the_attempts_and_the_cap(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, sleeps: list[float], no_jitter: None
) -> None:
    emulator.state.add_fault("status", status=502, times=20)
    with PortkeyHook(max_retries=2, max_retry_wait=1.5) as hook, pytest.raises(PortkeyServerError):
        hook.get_run_step(T, R, STEP_INSTANT)
    assert len(emulator.state.requests) == 3
    assert sleeps == [1.0, 1.5]


def test_zero_retries_means_exactly_one_attempt(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, sleeps: list[float]
) -> None:
    emulator.state.add_fault("status", status=503, times=5)
    with PortkeyHook(max_retries=0) as hook, pytest.raises(PortkeyServerError):
        hook.get_run_step(T, R, STEP_INSTANT)
    assert len(emulator.state.requests) == 1
    assert sleeps == []


def test_backoff_has_full_jitter_within_the_exponential_window(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"max_retries": 6, "max_retry_wait": 1000})
    emulator.state.add_fault("status", status=500, times=20)
    with PortkeyHook() as hook, pytest.raises(PortkeyServerError):
        hook.get_run_step(T, R, STEP_INSTANT)
    windows = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert len(sleeps) == len(windows)
    assert all(0 <= wait <= window for wait, window in zip(sleeps, windows, strict=True))
    assert sleeps != windows  # random, not the top of every window


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
    no_jitter: None,
    status: int,
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"max_retry_wait": 30})
    emulator.state.add_fault("status", status=status, headers={"Retry-After": "7"})
    with PortkeyHook() as hook:
        assert hook.get_run_step(T, R, STEP_INSTANT).succeeded
    assert sleeps == [7.0]


def test_retry_after_http_date_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
    no_jitter: None,
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"max_retry_wait": 60})
    emulator.state.add_fault(
        "status", status=429, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)}
    )
    with PortkeyHook() as hook:
        assert hook.get_run_step(T, R, STEP_INSTANT).succeeded
    (wait,) = sleeps
    assert 28.0 <= wait <= 30.0


@pytest.mark.parametrize("retry_after", ["3600", formatdate(time.time() + 3600, usegmt=True)])
def test_retry_after_is_capped_by_max_retry_wait(
    hook: PortkeyHook, emulator: EmulatorServer, sleeps: list[float], no_jitter: None, retry_after: str
) -> None:
    emulator.state.add_fault("status", status=429, headers={"Retry-After": retry_after})
    assert hook.get_run_step(T, R, STEP_INSTANT).succeeded
    assert sleeps == [2.0]  # the fixture connection's max_retry_wait


@pytest.mark.parametrize(
    "retry_after", ["soon", "", "-5", "inf", "nan", formatdate(time.time() - 3600, usegmt=True)]
)
def test_unusable_or_past_retry_after_falls_back_to_backoff(
    hook: PortkeyHook, emulator: EmulatorServer, sleeps: list[float], no_jitter: None, retry_after: str
) -> None:
    emulator.state.add_fault("status", status=503, headers={"Retry-After": retry_after})
    assert hook.get_run_step(T, R, STEP_INSTANT).succeeded
    assert sleeps == [1.0]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, PortkeyClientError),
        (401, PortkeyAuthError),
        (403, PortkeyAuthError),
        (404, PortkeyNotFoundError),
        (409, PortkeyClientError),
        (412, PortkeyLimitExhaustedError),
        (422, PortkeyClientError),
        (446, PortkeyGuardrailError),
    ],
)
def test_client_errors_fail_at_once_without_retry(
    hook: PortkeyHook,
    emulator: EmulatorServer,
    sleeps: list[float],
    status: int,
    error_class: type[PortkeyRequestError],
) -> None:
    emulator.state.add_fault("status", status=status, headers={"Retry-After": "1"}, times=5)
    with pytest.raises(error_class) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert type(caught.value) is error_class
    assert caught.value.status == status
    assert not caught.value.transient
    assert len(emulator.state.requests) == 1
    assert sleeps == []


def test_every_error_is_an_airflow_exception() -> None:
    for error_class in (PortkeyError, InvalidIdError, PortkeyRequestError, PortkeyConnectionError):
        assert issubclass(error_class, AirflowException)
    assert issubclass(InvalidIdError, ValueError)


# -- error messages -------------------------------------------------------------------------------------


def test_not_found_message_names_method_path_status_api_message_and_ids(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    with PortkeyHook(trace_id="trace-abc-123") as hook, pytest.raises(PortkeyNotFoundError) as caught:
        hook.get_run_step(T, R, "step_missing")
    error = caught.value
    message = str(error)
    assert f"GET /threads/{T}/runs/{R}/steps/step_missing" in message
    assert "HTTP 404" in message
    assert "No run step found with id 'step_missing'." in message
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    assert f"request id {error.request_id}" in message
    assert "Portkey trace id trace-abc-123" in message


def test_upstream_error_shape_message_and_code_are_quoted(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    body = {
        "error": {
            "message": "Rate limit reached for requests",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    emulator.state.add_fault(
        "status",
        status=422,
        body=body,
        headers={"x-request-id": "req_upstream_1", "x-portkey-trace-id": "tr_9"},
    )
    with pytest.raises(PortkeyClientError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    message = str(caught.value)
    assert "API said: Rate limit reached for requests; code rate_limit_exceeded, type requests" in message
    assert (caught.value.code, caught.value.error_type) == ("rate_limit_exceeded", "requests")
    assert "request id req_upstream_1" in message
    assert "Portkey trace id tr_9" in message
    assert "HTTP 422" in message


def test_gateway_error_shape_message_is_quoted(hook: PortkeyHook, emulator: EmulatorServer) -> None:
    body = {"status": "failure", "message": "Budget limit exceeded for this workspace"}
    emulator.state.add_fault("status", status=412, body=body)
    with pytest.raises(PortkeyClientError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert "API said: Budget limit exceeded for this workspace" in str(caught.value)
    assert "HTTP 412" in str(caught.value)


def test_a_429_saying_insufficient_quota_fails_at_once_as_a_spent_limit(
    hook: PortkeyHook, emulator: EmulatorServer, sleeps: list[float]
) -> None:
    body = {"error": {"message": "You exceeded your current quota", "type": "insufficient_quota"}}
    emulator.state.add_fault("status", status=429, body=body, headers={"Retry-After": "1"}, times=5)
    with pytest.raises(PortkeyLimitExhaustedError, match="quota exhausted: not a rate limit"):
        hook.get_run_step(T, R, STEP_INSTANT)
    assert (len(emulator.state.requests), sleeps) == (1, [])


def test_a_guardrail_denial_reaches_the_user_with_its_hook_results(
    hook: PortkeyHook, emulator: EmulatorServer, sleeps: list[float]
) -> None:
    hook_results = {
        "before_request_hooks": [
            {"id": "pg-block", "verdict": False, "checks": [{"id": "default.contains", "verdict": False}]}
        ],
        "after_request_hooks": [],
    }
    body = {
        "error": {"message": "The guardrail checks defined in the config failed.", "type": "hooks_failed"},
        "hook_results": hook_results,
    }
    emulator.state.add_fault("status", status=446, body=body)
    with pytest.raises(PortkeyGuardrailError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert caught.value.hook_results == hook_results
    assert "failed: pg-block (default.contains)" in str(caught.value)
    assert "type hooks_failed" in str(caught.value)
    assert sleeps == []


def test_refused_api_key_is_an_auth_error_quoting_the_gateway(
    hook: PortkeyHook, emulator: EmulatorServer, sleeps: list[float]
) -> None:
    emulator.state.api_keys = frozenset({"pk-the-only-valid-key"})
    with pytest.raises(PortkeyAuthError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert "HTTP 401" in str(caught.value)
    assert "Invalid API Key" in str(caught.value)
    assert len(emulator.state.requests) == 1
    assert_no_secret(str(caught.value))


def test_error_body_that_is_not_json_is_quoted_as_an_excerpt(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    emulator.state.add_fault("status", status=400, body="<html><body>Bad gateway config</body></html>")
    with pytest.raises(PortkeyClientError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert "'<html><body>Bad gateway config</body></html>'" in str(caught.value)


# -- redirects --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_an_error_naming_the_location_and_is_never_followed(
    hook: PortkeyHook,
    emulator: EmulatorServer,
    redirect_target: EmulatorServer,
    sleeps: list[float],
    status: int,
) -> None:
    location = f"{redirect_target.base_url}/threads/{T}/runs/{R}/steps/{STEP_INSTANT}"
    emulator.state.add_fault("redirect", status=status, location=location)
    with pytest.raises(PortkeyRedirectError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert location in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    assert redirect_target.state.requests == []
    assert len(emulator.state.requests) == 1
    assert sleeps == []


# -- bad responses -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "quoted"),
    [
        (b"this is not json", "'this is not json'"),
        (b"", "''"),
        (b'{"id": "step_1", "object": "thread.run.step", "status"', '\'{"id": "step_1"'),
        (b"\x00\xffbinary", "binary"),
    ],
)
def test_body_that_is_not_json_is_a_bad_response_quoting_an_excerpt(
    hook: PortkeyHook, emulator: EmulatorServer, sleeps: list[float], body: bytes, quoted: str
) -> None:
    emulator.state.add_fault("malformed", body=body)
    with pytest.raises(PortkeyBadResponseError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert "not JSON" in str(caught.value)
    assert quoted in str(caught.value)
    assert len(emulator.state.requests) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"object": "thread.run"}, "object"),
        ({"id": None}, "id"),
        ({"status": None}, "status"),
        ({"status": 3}, "status"),
    ],
)
def test_json_that_is_not_a_run_step_is_a_bad_response(
    hook: PortkeyHook, emulator: EmulatorServer, change: dict[str, Any], problem: str
) -> None:
    step = emulator.state.retrieve_step(T, R, STEP_INSTANT)
    assert step is not None
    step.update(change)
    step = {key: value for key, value in step.items() if value is not None or key not in change}
    emulator.state.add_fault("malformed", body=step)
    with pytest.raises(PortkeyBadResponseError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    message = str(caught.value)
    assert "unexpected JSON" in message
    assert problem in message
    assert STEP_INSTANT in message  # the excerpt


@pytest.mark.parametrize("body", [[1, 2], "just a string", 42, None])
def test_json_that_is_not_an_object_is_a_bad_response(
    hook: PortkeyHook, emulator: EmulatorServer, body: Any
) -> None:
    emulator.state.add_fault("malformed", body=json.dumps(body))
    with pytest.raises(PortkeyBadResponseError, match="not a JSON object"):
        hook.get_run_step(T, R, STEP_INSTANT)


def test_bad_response_excerpt_is_short(hook: PortkeyHook, emulator: EmulatorServer) -> None:
    emulator.state.add_fault("malformed", body="x" * 100_000)
    with pytest.raises(PortkeyBadResponseError) as caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    message = str(caught.value)
    assert "'" + "x" * 200 + "...'" in message
    assert "x" * 201 not in message


def test_bad_list_page_is_a_bad_response(hook: PortkeyHook, emulator: EmulatorServer) -> None:
    emulator.state.add_fault(
        "malformed", body={"object": "list", "data": [{"id": "s", "object": "thread.run"}]}
    )
    with pytest.raises(PortkeyBadResponseError, match="object"):
        hook.list_run_steps(T, R)


# -- ids ---------------------------------------------------------------------------------------------------


BAD_IDS = [
    None,
    "",
    "None",
    "../runs",
    "..",
    "a/b",
    "a b",
    "step?x=1",
    "%2e%2e",
    "ünïcode",
    "步骤",
    "x" * 300,
    12,
    "a\n",
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("position", [0, 1, 2])
def test_bad_id_is_a_value_error_naming_the_parameter_before_any_request(
    hook: PortkeyHook, emulator: EmulatorServer, bad: Any, position: int
) -> None:
    ids: list[Any] = [T, R, STEP_INSTANT]
    ids[position] = bad
    name = ("thread_id", "run_id", "step_id")[position]
    with pytest.raises(InvalidIdError) as caught:
        hook.get_run_step(*ids)
    assert isinstance(caught.value, ValueError)
    assert name in str(caught.value)
    if position < 2:
        with pytest.raises(InvalidIdError, match=name):
            hook.list_run_steps(ids[0], ids[1])
    assert emulator.state.requests == []


def test_every_allowed_id_character_reaches_the_api_unchanged(
    hook: PortkeyHook, emulator: EmulatorServer
) -> None:
    thread_id, run_id, step_id = "thread_AZaz09-_", "r" * 256, "-_-"
    emulator.state.add_step(thread_id, run_id, step_id, statuses=("completed",))
    assert hook.get_run_step(thread_id, run_id, step_id).id == step_id
    (request,) = emulator.state.requests
    assert request.path == step_path(step_id, thread_id, run_id)


# -- test_connection -----------------------------------------------------------------------------------------


def test_test_connection_succeeds_against_the_emulator(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    ok, message = PortkeyHook().test_connection()
    assert ok, message
    assert "Connected" in message
    assert len(emulator.state.requests) == 1


def test_test_connection_fails_with_a_refused_key(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, sleeps: list[float]
) -> None:
    emulator.state.api_keys = frozenset({"pk-the-only-valid-key"})
    ok, message = PortkeyHook().test_connection()
    assert not ok
    assert "HTTP 401" in message
    assert "Invalid API Key" in message
    assert_no_secret(message)
    assert len(emulator.state.requests) == 1


def test_test_connection_fails_fast_on_a_closed_port(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, closed_port: int, sleeps: list[float]
) -> None:
    use_connection(monkeypatch, portkey_conn, host=f"http://127.0.0.1:{closed_port}")
    ok, message = PortkeyHook().test_connection()
    assert not ok
    assert f"http://127.0.0.1:{closed_port}/v1" in message
    assert "ConnectionError" in message
    assert sleeps == []  # no retries behind the UI's Test button


def test_test_connection_fails_on_a_server_error_without_retrying(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, sleeps: list[float]
) -> None:
    emulator.state.add_fault("status", status=503, times=5)
    ok, message = PortkeyHook().test_connection()
    assert not ok
    assert "HTTP 503" in message
    assert len(emulator.state.requests) == 1
    assert sleeps == []


def test_test_connection_reports_a_bad_connection_without_a_request(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"virtual_key": None})
    ok, message = PortkeyHook().test_connection()
    assert not ok
    assert "choose the upstream" in message
    assert emulator.state.requests == []


def test_bad_connection_is_a_configuration_error_before_any_request(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, portkey_conn, password=None)
    with PortkeyHook() as hook, pytest.raises(PortkeyConfigurationError, match="password"):
        hook.get_run_step(T, R, STEP_INSTANT)
    assert emulator.state.requests == []


# -- secrets --------------------------------------------------------------------------------


def test_keys_are_registered_with_the_airflow_secret_masker(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, fresh_masker: None
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"provider": "openai", "provider_api_key": PROVIDER_KEY})
    line = f"api={API_KEY} vk={VIRTUAL_KEY} pk={PROVIDER_KEY}"
    assert redact(line) == line  # nothing registered yet
    with PortkeyHook() as hook:
        hook.settings  # noqa: B018 - reading the connection registers its secrets
    assert redact(line) == "api=*** vk=*** pk=***"


def test_no_key_in_logs_errors_or_reprs_on_any_path(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    redirect_target: EmulatorServer,
    all_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    sleeps: list[float],
    fresh_masker: None,
) -> None:
    use_connection(
        monkeypatch,
        portkey_conn,
        extra={"provider": "openai", "provider_api_key": PROVIDER_KEY, "max_retries": 1},
    )
    errors: list[BaseException] = []

    def attempt(hook: PortkeyHook, *ids: Any) -> None:
        try:
            hook.get_run_step(*ids)
        except (PortkeyError, requests.RequestException) as error:
            errors.append(error)

    with PortkeyHook(trace_id="leak-check") as hook:
        hook.get_run_step(T, R, STEP_INSTANT)
        hook.list_run_steps(T, R)
        attempt(hook, T, R, "step_missing")
        attempt(hook, T, R, "../runs")
        for status in (400, 412, 429, 500):
            emulator.state.add_fault("status", status=status, times=2)
            attempt(hook, T, R, STEP_INSTANT)
        for kind in ("reset", "truncated"):
            emulator.state.add_fault(kind, times=2)
            attempt(hook, T, R, STEP_INSTANT)
        emulator.state.add_fault("redirect", location=f"{redirect_target.base_url}/x?key={API_KEY}")
        attempt(hook, T, R, STEP_INSTANT)
        emulator.state.add_fault("malformed", body=f'{{"echo": "{API_KEY} {VIRTUAL_KEY} {PROVIDER_KEY}"}}')
        attempt(hook, T, R, STEP_INSTANT)
        emulator.state.add_fault("status", status=401, body={"error": {"message": f"Bad key {PROVIDER_KEY}"}})
        attempt(hook, T, R, STEP_INSTANT)
        emulator.state.api_keys = frozenset({"pk-other"})
        attempt(hook, T, R, STEP_INSTANT)
        ok, message = hook.test_connection()
        assert_no_secret(repr(hook), str(hook), repr(hook.settings), message)

    assert not ok
    assert len(errors) == 12
    assert all(isinstance(error, PortkeyError) for error in errors)
    for error in errors:
        assert_no_secret(str(error), repr(error), error.args)
        assert error.__cause__ is None
    logged = capsys.readouterr()
    assert "retry 1 of 1" in logged.out  # the hook's own warnings were captured here
    records = [record.getMessage() for record in all_logs.records]
    assert any("/steps/step_instant" in record for record in records)  # urllib3's DEBUG lines
    assert_no_secret(all_logs.text, *records, logged.out, logged.err)
    assert redirect_target.state.requests == []


def test_a_netrc_entry_never_replaces_the_provider_key(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    tmp_path: Any,
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {emulator.host}\nlogin someone\npassword netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    extra = {"provider": "openai", "provider_api_key": PROVIDER_KEY}
    use_connection(monkeypatch, portkey_conn, extra=extra)
    with PortkeyHook() as hook:
        hook.get_run_step(T, R, STEP_INSTANT)
    (request,) = emulator.state.requests
    assert request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
