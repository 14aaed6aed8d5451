"""The one retry decision (``retries.py``): backoff, Retry-After, what proves nothing was done, deadlines."""

from __future__ import annotations

import time

import pytest

from airflow_provider_portkey.errors import PortkeyServerError
from airflow_provider_portkey.protocol import (
    connection_error,
    create_thread_and_run_request,
    error_for_status,
    run_body,
    run_step_request,
)
from airflow_provider_portkey.retries import RetryPolicy, keeps_waiting

REQUEST = run_step_request("thread_1", "run_1", "step_1")


def delays(
    policy: RetryPolicy, error: PortkeyServerError, attempts: range, rand: float
) -> list[float | None]:
    return [policy.decide(REQUEST, error, n, rand=lambda: rand).delay for n in attempts]


def test_backoff_doubles_with_full_jitter_and_caps() -> None:
    policy = RetryPolicy(max_retries=6, max_wait=10)
    transient = error_for_status(REQUEST, 500, {}, b"")
    assert isinstance(transient, PortkeyServerError)
    assert delays(policy, transient, range(7), 1.0) == [1, 2, 4, 8, 10, 10, None]
    assert delays(policy, transient, range(4), 0.5) == [0.5, 1, 2, 4]
    assert policy.decide(REQUEST, transient, 6).kind == "spent"


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retries=3, max_wait=30)

    def delay(attempt: int, retry_after: str) -> float | None:
        error = error_for_status(REQUEST, 429, {"retry-after": retry_after}, b"")
        return policy.decide(REQUEST, error, attempt, rand=lambda: 1.0).delay

    assert (delay(0, "20"), delay(0, "99")) == (20, 30)
    assert delay(2, "1") == 4  # a Retry-After shorter than the backoff never shortens it


@pytest.mark.parametrize("status", [301, 400, 401, 404, 412, 422, 446])
def test_permanent_errors_are_never_retried(status: int) -> None:
    decision = RetryPolicy(5, 60).decide(REQUEST, error_for_status(REQUEST, status, {}, b""), 0)
    assert (decision.delay, decision.kind) == (None, "permanent")


def test_a_429_with_insufficient_quota_is_not_retried() -> None:
    body = b'{"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}'
    decision = RetryPolicy(5, 60).decide(REQUEST, error_for_status(REQUEST, 429, {}, body), 0)
    assert decision.kind == "permanent"


def test_no_retry_wait_ends_after_the_deadline() -> None:
    policy = RetryPolicy(max_retries=5, max_wait=60)
    error = error_for_status(REQUEST, 503, {"retry-after": "10"}, b"")
    now = time.time()
    assert policy.decide(REQUEST, error, 0, deadline=now + 60).delay == 10
    late = policy.decide(REQUEST, error, 0, deadline=now + 5)
    assert (late.delay, late.kind) == (None, "deadline")


def test_a_post_that_may_have_acted_is_not_repeated_but_a_get_is() -> None:
    policy = RetryPolicy(max_retries=5, max_wait=60)
    error = error_for_status(REQUEST, 502, {}, b"")
    post = create_thread_and_run_request(run_body("asst_1"))
    assert policy.decide(post, error, 0).kind == "unsafe"
    assert policy.decide(REQUEST, error, 0).kind == "retry"


def test_a_wait_fails_on_a_first_look_that_reached_no_server_and_waits_out_the_rest() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    unreachable = connection_error(REQUEST, refused, "http://127.0.0.1:1/v1")
    reset = connection_error(REQUEST, ConnectionResetError(104, "reset"), "http://127.0.0.1:1/v1")
    outage = error_for_status(REQUEST, 503, {}, b"")
    assert not keeps_waiting(unreachable, first_look=True)
    assert keeps_waiting(unreachable, first_look=False)
    assert keeps_waiting(reset, first_look=True)
    assert keeps_waiting(outage, first_look=True)
    assert not keeps_waiting(error_for_status(REQUEST, 412, {}, b""), first_look=False)
    assert not keeps_waiting(ValueError("bad input"), first_look=False)
