"""The API protocol both hooks share (no I/O): requests, ids, what an answer or a transport failure means."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyAuthError,
    PortkeyBadResponseError,
    PortkeyClientError,
    PortkeyConfigurationError,
    PortkeyConnectionError,
    PortkeyGuardrailError,
    PortkeyLimitExhaustedError,
    PortkeyNotFoundError,
    PortkeyRateLimitError,
    PortkeyRedirectError,
    PortkeyServerError,
)
from airflow_provider_portkey.protocol import (
    FILE_SEARCH_CONTENT,
    ApiRequest,
    cancel_run_request,
    connection_error,
    create_run_request,
    create_thread_and_run_request,
    error_for_status,
    excerpt,
    feedback_request,
    get_run_request,
    interpret_response,
    list_run_steps_request,
    parse_retry_after,
    parse_run_step,
    run_step_request,
    submit_tool_outputs_request,
    validate_id,
)
from airflow_provider_portkey.responses_api import (
    cancel_response_request,
    create_response_request,
    delete_response_request,
    get_response_request,
    list_input_items_request,
    response_body,
)
from tests.support.secrets import API_KEY, PROVIDER_KEY, assert_no_secret

REQUEST = run_step_request("thread_1", "run_1", "step_1")
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


ASSISTANTS_BETA = (("OpenAI-Beta", "assistants=v2"),)


def test_run_step_request_path_and_include() -> None:
    request = run_step_request("thread_1", "run_1", "step_1", include=[FILE_SEARCH_CONTENT])
    assert request == ApiRequest(
        "GET",
        "/threads/thread_1/runs/run_1/steps/step_1",
        (("include[]", FILE_SEARCH_CONTENT),),
        headers=ASSISTANTS_BETA,
    )
    assert request.description == "GET /threads/thread_1/runs/run_1/steps/step_1"


def test_assistants_requests_and_only_they_carry_the_assistants_beta_header() -> None:
    assistants = [
        run_step_request("t", "r", "s"),
        list_run_steps_request("t", "r"),
        create_thread_and_run_request({"assistant_id": "asst_1"}),
        create_run_request("t", {"assistant_id": "asst_1"}),
        get_run_request("t", "r"),
        cancel_run_request("t", "r"),
        submit_tool_outputs_request("t", "r", {"call_1": "out"}),
    ]
    responses = [
        create_response_request(response_body({"model": "m", "input": "hi"})),
        get_response_request("resp_1"),
        cancel_response_request("resp_1"),
        delete_response_request("resp_1"),
        list_input_items_request("resp_1"),
    ]
    assert {request.description: request.headers for request in assistants} == {
        request.description: ASSISTANTS_BETA for request in assistants
    }
    assert {request.description: request.headers for request in responses} == {
        request.description: () for request in responses
    }


def test_feedback_request_body_and_its_checks() -> None:
    request = feedback_request("airflow/d/r/t/try-1", -10, weight=1, metadata={"_user": "ada"})
    assert (request.method, request.path, request.safe_to_repeat) == ("POST", "/feedback", False)
    assert request.body == {
        "trace_id": "airflow/d/r/t/try-1",
        "value": -10,
        "weight": 1.0,
        "metadata": {"_user": "ada"},
    }
    assert feedback_request("t", 0).body == {"trace_id": "t", "value": 0}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"trace_id": "", "value": 1}, "trace_id"),
        ({"trace_id": "t", "value": 11}, "value must be a whole number from -10 to 10, got 11"),
        ({"trace_id": "t", "value": True}, "value"),
        ({"trace_id": "t", "value": 1, "weight": 1.5}, "weight must be a number from 0 to 1"),
        ({"trace_id": "t", "value": 1, "metadata": {"k": 1}}, "metadata must be a mapping of strings"),
    ]
    for arguments, named in bad:
        with pytest.raises(PortkeyConfigurationError, match=named):
            feedback_request(**arguments)


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


@pytest.mark.parametrize(("value", "shown"), [(None, "run_id is None,"), ("None", "run_id is 'None',")])
def test_an_id_that_rendered_to_none_says_an_upstream_xcom_pull_may_have_found_nothing(
    value: Any, shown: str
) -> None:
    with pytest.raises(InvalidIdError) as caught:
        validate_id("run_id", value)
    message = str(caught.value)
    assert message.startswith(shown)
    assert "xcom_pull" in message
    assert "letters" not in message  # 'None' is letters: the old message contradicted itself


@pytest.mark.parametrize(
    ("status", "error_class", "transient"),
    [
        (301, PortkeyRedirectError, False),
        (400, PortkeyClientError, False),
        (401, PortkeyAuthError, False),
        (403, PortkeyAuthError, False),
        (404, PortkeyNotFoundError, False),
        (408, PortkeyServerError, True),
        (412, PortkeyLimitExhaustedError, False),
        (429, PortkeyRateLimitError, True),
        (446, PortkeyGuardrailError, False),
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
        "API said: Nope; type invalid_request_error; request id req_1; Portkey trace id tr_1"
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


def test_the_apis_code_type_param_and_a_body_excerpt_are_kept_on_the_error() -> None:
    body = {
        "error": {"message": "Bad value", "type": "invalid_request_error", "param": "limit", "code": "x1"}
    }
    error = error_for_status(REQUEST, 400, {}, json.dumps(body).encode())
    assert (error.api_message, error.code, error.error_type, error.param) == (
        "Bad value",
        "x1",
        "invalid_request_error",
        "limit",
    )
    assert "Bad value" in (error.body or "")
    assert "API said: Bad value; code x1, type invalid_request_error, param limit" in str(error)


@pytest.mark.parametrize("field", ["code", "type"])
def test_a_429_saying_insufficient_quota_is_a_spent_limit_not_a_rate_limit(field: str) -> None:
    body = {"error": {"message": "You exceeded your current quota", field: "insufficient_quota"}}
    error = error_for_status(REQUEST, 429, {"retry-after": "1"}, json.dumps(body).encode())
    assert isinstance(error, PortkeyLimitExhaustedError)
    assert not error.transient
    assert "quota exhausted: not a rate limit" in str(error)


def test_a_412_is_a_spent_budget_that_fails_fast() -> None:
    body = {"status": "failure", "message": "Budget limit exceeded for this workspace"}
    error = error_for_status(REQUEST, 412, {}, json.dumps(body).encode())
    assert isinstance(error, PortkeyLimitExhaustedError)
    assert not error.transient
    assert "budget exhausted" in str(error)


#: A guardrail denial as the Portkey gateway sends it (src/middlewares/hooks: 446, hooks_failed).
GUARDRAIL_DENIAL = {
    "error": {
        "message": "The guardrail checks defined in the config failed. You can find more information "
        "in the `hook_results` object.",
        "type": "hooks_failed",
        "param": None,
        "code": None,
    },
    "hook_results": {
        "before_request_hooks": [
            {
                "id": "pg-pii-1",
                "verdict": False,
                "deny": True,
                "checks": [
                    {"id": "default.regexMatch", "verdict": True},
                    {"id": "default.contains", "verdict": False, "data": {"echo": API_KEY}},
                ],
            },
            {"id": "pg-ok", "verdict": True, "checks": []},
        ],
        "after_request_hooks": [],
    },
}


def test_a_guardrail_denial_keeps_hook_results_and_names_the_failed_checks() -> None:
    error = error_for_status(REQUEST, 446, {}, json.dumps(GUARDRAIL_DENIAL).encode(), secrets=(API_KEY,))
    assert isinstance(error, PortkeyGuardrailError)
    assert not error.transient
    assert error.error_type == "hooks_failed"
    assert isinstance(error.hook_results, dict)
    hooks = error.hook_results["before_request_hooks"]
    assert [hook["id"] for hook in hooks] == ["pg-pii-1", "pg-ok"]
    assert "guardrail denied the request (failed: pg-pii-1 (default.contains))" in str(error)
    assert_no_secret(str(error), repr(error.hook_results))


def test_connection_error_names_the_cause_by_errno_and_the_base_url_never_the_message() -> None:
    refused = ConnectionRefusedError(111, f"header x-portkey-api-key: {API_KEY}")
    wrapped = OSError("All connection attempts failed")
    wrapped.__cause__ = refused
    error = connection_error(REQUEST, wrapped, "http://127.0.0.1:9/v1", "portkey_default")
    assert isinstance(error, PortkeyConnectionError)
    assert error.transient
    assert str(error) == (
        "GET /threads/thread_1/runs/run_1/steps/step_1: no usable answer from http://127.0.0.1:9/v1 "
        "(Airflow connection 'portkey_default'): OSError: Connection refused"
    )
    assert (error.cause, error.reached_server) == ("Connection refused", False)
    assert_no_secret(str(error))


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
