"""The I/O-free core both hooks share: requests, ids, response interpretation and retry decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from airflow_provider_portkey.core import (
    FILE_SEARCH_CONTENT,
    ApiRequest,
    RetryPolicy,
    connection_error,
    error_for_status,
    excerpt,
    interpret_response,
    list_run_steps_request,
    parse_retry_after,
    parse_run_step,
    run_step_request,
    validate_id,
)
from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyAuthError,
    PortkeyBadResponseError,
    PortkeyClientError,
    PortkeyConnectionError,
    PortkeyNotFoundError,
    PortkeyRateLimitError,
    PortkeyRedirectError,
    PortkeyServerError,
)
from tests.support.secrets import API_KEY, PROVIDER_KEY, assert_no_secret

REQUEST = run_step_request("thread_1", "run_1", "step_1")
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_run_step_request_path_and_include() -> None:
    request = run_step_request("thread_1", "run_1", "step_1", include=[FILE_SEARCH_CONTENT])
    assert request == ApiRequest(
        "GET", "/threads/thread_1/runs/run_1/steps/step_1", (("include[]", FILE_SEARCH_CONTENT),)
    )
    assert request.description == "GET /threads/thread_1/runs/run_1/steps/step_1"


def test_list_request_defaults_and_cursors() -> None:
    request = list_run_steps_request("t", "r", after="step_9", before="step_1", limit=5, order="desc")
    assert request.path == "/threads/t/runs/r/steps"
    assert request.params == (("limit", "5"), ("order", "desc"), ("after", "step_9"), ("before", "step_1"))
    with pytest.raises(InvalidIdError, match="after"):
        list_run_steps_request("t", "r", after="../x")


@pytest.mark.parametrize("value", ["a", "A-z_0", "x" * 256])
def test_valid_ids_pass_unchanged(value: str) -> None:
    assert validate_id("step_id", value) == value


@pytest.mark.parametrize("value", [None, "", "None", "x" * 257, "a.b", "a/b", "é", "a\x00", b"step", ["s"]])
def test_invalid_ids_are_value_errors_naming_the_parameter(value: Any) -> None:
    with pytest.raises(InvalidIdError) as caught:
        validate_id("run_id", value)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("run_id ")


@pytest.mark.parametrize(
    ("status", "error_class", "transient"),
    [
        (301, PortkeyRedirectError, False),
        (400, PortkeyClientError, False),
        (401, PortkeyAuthError, False),
        (403, PortkeyAuthError, False),
        (404, PortkeyNotFoundError, False),
        (408, PortkeyServerError, True),
        (412, PortkeyClientError, False),
        (429, PortkeyRateLimitError, True),
        (446, PortkeyClientError, False),
        (500, PortkeyServerError, True),
        (501, PortkeyBadResponseError, False),
        (504, PortkeyServerError, True),
    ],
)
def test_status_maps_to_one_error_class(status: int, error_class: type, transient: bool) -> None:
    error = error_for_status(REQUEST, status, {}, b"")
    assert type(error) is error_class
    assert error.transient is transient
    assert error.status == status


def test_error_message_has_both_api_shapes_and_ids() -> None:
    upstream = json.dumps({"error": {"message": "Nope", "type": "invalid_request_error", "code": None}})
    error = error_for_status(
        REQUEST, 400, {"x-request-id": "req_1", "x-portkey-trace-id": "tr_1"}, upstream.encode()
    )
    assert str(error) == (
        "GET /threads/thread_1/runs/run_1/steps/step_1: request refused; HTTP 400; "
        "API said: Nope (invalid_request_error); request id req_1; Portkey trace id tr_1"
    )
    gateway = json.dumps({"status": "failure", "message": "Portkey API Key Not Found"}).encode()
    assert "API said: Portkey API Key Not Found" in str(error_for_status(REQUEST, 401, {}, gateway))


def test_error_message_redacts_secrets_echoed_by_the_api() -> None:
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}"}}).encode()
    error = error_for_status(REQUEST, 401, {"location": API_KEY}, body, secrets=(API_KEY, PROVIDER_KEY))
    assert "Incorrect API key provided: ***" in str(error)
    assert_no_secret(str(error))
    redirect = error_for_status(REQUEST, 302, {"location": f"https://x/?k={API_KEY}"}, b"", (API_KEY,))
    assert "redirect to https://x/?k=*** refused" in str(redirect)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        (format_datetime(NOW + timedelta(seconds=42), usegmt=True), 42.0),
        (format_datetime(NOW - timedelta(seconds=42), usegmt=True), 0.0),
        ("Thu, 01 Jan 2026 12:00:10", 10.0),  # no zone: taken as GMT
    ],
)
def test_parse_retry_after_seconds_and_http_date(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_retry_after_reaches_the_error() -> None:
    error = error_for_status(REQUEST, 429, {"retry-after": "12"}, b"")
    assert isinstance(error, PortkeyRateLimitError)
    assert error.retry_after == 12.0
    assert error_for_status(REQUEST, 503, {"retry-after": "3"}, b"").retry_after == 3.0


def test_retry_policy_doubles_with_full_jitter_and_caps() -> None:
    policy = RetryPolicy(max_retries=6, max_wait=10)
    transient = error_for_status(REQUEST, 500, {}, b"")
    assert [policy.next_delay(n, transient, lambda: 1.0) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert [policy.next_delay(n, transient, lambda: 0.5) for n in range(4)] == [0.5, 1, 2, 4]
    assert policy.next_delay(6, transient, lambda: 1.0) is None


def test_retry_policy_honours_and_caps_retry_after() -> None:
    policy = RetryPolicy(max_retries=3, max_wait=30)
    assert policy.next_delay(0, error_for_status(REQUEST, 429, {"retry-after": "20"}, b""), lambda: 1.0) == 20
    assert policy.next_delay(0, error_for_status(REQUEST, 429, {"retry-after": "99"}, b""), lambda: 1.0) == 30
    # a Retry-After shorter than the backoff never shortens it
    assert policy.next_delay(2, error_for_status(REQUEST, 429, {"retry-after": "1"}, b""), lambda: 1.0) == 4


@pytest.mark.parametrize("status", [301, 400, 401, 404, 412, 422, 446])
def test_retry_policy_never_retries_permanent_errors(status: int) -> None:
    assert RetryPolicy(5, 60).next_delay(0, error_for_status(REQUEST, status, {}, b""), lambda: 1.0) is None


def test_connection_error_names_the_failure_class_and_base_url_only() -> None:
    error = connection_error(
        REQUEST, OSError(f"header x-portkey-api-key: {API_KEY}"), "http://127.0.0.1:9/v1"
    )
    assert isinstance(error, PortkeyConnectionError)
    assert error.transient
    assert str(error) == (
        "GET /threads/thread_1/runs/run_1/steps/step_1: no usable answer from http://127.0.0.1:9/v1 (OSError)"
    )


def test_interpret_response_returns_json_of_a_2xx() -> None:
    assert interpret_response(REQUEST, 200, {}, b'{"a": 1}') == {"a": 1}
    with pytest.raises(PortkeyNotFoundError):
        interpret_response(REQUEST, 404, {}, b"{}")


def test_excerpt_is_short_printable_and_redacted() -> None:
    quoted = excerpt(b"\x1b[31m" + API_KEY.encode() + b"\n" + b"y" * 5000, secrets=(API_KEY,))
    assert_no_secret(quoted)
    assert "\n" not in quoted
    assert "\x1b" not in quoted
    assert quoted.endswith("...'")
    assert len(quoted) < 220


def test_parse_run_step_quotes_what_came_instead() -> None:
    with pytest.raises(PortkeyBadResponseError) as caught:
        parse_run_step(
            REQUEST, {"object": "thread.run", "id": "run_1", "status": "queued", "k": API_KEY}, (API_KEY,)
        )
    message = str(caught.value)
    assert "object" in message
    assert "status" in message
    assert "run_1" in message
    assert_no_secret(message)
