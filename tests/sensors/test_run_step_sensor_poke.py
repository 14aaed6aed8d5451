"""RunStepSensor in poke and reschedule mode against the live emulator (``execute`` with a minimal context).

Time is the ``clock`` fixture: poke intervals and timeouts pass without waiting; the hook's own
retry sleeps are recorded by ``sleeps``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_portkey.emulator import (
    SEED_RUN_ID,
    SEED_THREAD_ID,
    STEP_COMPLETES,
    EmulatorServer,
)
from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyAuthError,
    PortkeyConfigurationError,
    PortkeyError,
    PortkeyLimitExhaustedError,
    PortkeyNotFoundError,
    RunStepUnsuccessfulError,
)
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from tests.conftest import PortkeyConnection
from tests.sensors.support import (
    UNSUCCESSFUL_STEPS,
    FakeClock,
    FakeTaskInstance,
    as_sent,
    log_text,
    make_context,
    run_step_sensor,
    slow_step_with_burst_after_first_wait,
    step_gets,
    stuck,
)
from tests.support.airflow_compat import AirflowRescheduleException
from tests.support.secrets import assert_no_secret

STEP_PATH = f"/threads/{SEED_THREAD_ID}/runs/{SEED_RUN_ID}/steps/"


def sensor(step_id: str = STEP_COMPLETES, **kwargs: Any) -> RunStepSensor:
    """A poke-mode sensor on the seeded thread and run."""
    options: dict[str, Any] = {"poke_interval": 5, "timeout": 600, "mode": "poke", "deferrable": False}
    return run_step_sensor("sensor_poke_tests", step_id, options | kwargs)


# -- success -------------------------------------------------------------------------------------


def test_poke_waits_through_in_progress_and_returns_the_completed_step_json(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock, sleeps: list[float]
) -> None:
    result = sensor(poke_interval=7).execute(make_context())

    assert result["status"] == "completed"
    assert result == as_sent(emulator, STEP_COMPLETES)
    assert step_gets(emulator, STEP_COMPLETES) == 3  # in_progress, in_progress, completed
    assert clock.sleeps == [7, 7]
    assert sleeps == []  # no hook retries


def test_returned_json_is_exactly_what_the_api_sent_unknown_fields_and_nulls_included(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    extra = {"metadata": None, "future_field": {"nested": [1, None, "x"]}, "expired_at": None}
    emulator.state.add_step(
        SEED_THREAD_ID, SEED_RUN_ID, "step_extra", statuses=("completed",), extra_fields=extra
    )

    result = sensor("step_extra").execute(make_context())

    assert result == as_sent(emulator, "step_extra")
    assert result["future_field"] == {"nested": [1, None, "x"]}
    assert "metadata" in result
    assert result["metadata"] is None


def test_include_is_sent_as_include_brackets_query(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    include = "step_details.tool_calls[*].file_search.results[*].content"
    sensor("step_instant", include=[include]).execute(make_context())

    assert emulator.state.requests[-1].query == [("include[]", include)]


# -- unsuccessful terminal statuses --------------------------------------------------------------


@pytest.mark.parametrize(("step_id", "status", "error_parts"), UNSUCCESSFUL_STEPS)
def test_unsuccessful_status_fails_without_retry_naming_status_and_last_error(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    step_id: str,
    status: str,
    error_parts: list[str],
) -> None:
    with pytest.raises(RunStepUnsuccessfulError) as raised:
        sensor(step_id, retries=3).execute(make_context())

    assert isinstance(raised.value, AirflowFailException)  # Airflow does not retry these
    message = str(raised.value)
    assert f"is {status}" in message
    assert step_id in message
    for part in error_parts:
        assert part in message
    assert step_gets(emulator, step_id) == 2


def test_failed_step_message_carries_a_custom_last_error_code_and_message(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    last_error = {"code": "rate_limit_exceeded", "message": "Quota hit for the assistant."}
    emulator.state.add_step(
        SEED_THREAD_ID, SEED_RUN_ID, "step_quota", statuses=("failed",), last_error=last_error
    )

    with pytest.raises(RunStepUnsuccessfulError, match=r"is failed: rate_limit_exceeded: Quota hit"):
        sensor("step_quota").execute(make_context())


@pytest.mark.parametrize(("step_id", "status", "error_parts"), UNSUCCESSFUL_STEPS)
def test_empty_fail_on_statuses_succeeds_on_any_terminal_status_with_the_json(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    step_id: str,
    status: str,
    error_parts: list[str],
) -> None:
    result = sensor(step_id, fail_on_statuses=()).execute(make_context())

    assert result["status"] == status
    assert result == as_sent(emulator, step_id)


def test_fail_on_statuses_can_pick_which_statuses_fail(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    assert sensor("step_cancelled", fail_on_statuses=["failed"]).execute(make_context())["status"] == (
        "cancelled"
    )
    with pytest.raises(RunStepUnsuccessfulError, match="is failed"):
        sensor("step_fails", fail_on_statuses=["failed"]).execute(make_context())


@pytest.mark.parametrize("bad", [("completed",), ("in_progress",), ("failed", "faild")])
def test_fail_on_statuses_rejects_statuses_that_cannot_mean_failure(bad: tuple[str, ...]) -> None:
    with pytest.raises(PortkeyConfigurationError, match="fail_on_statuses"):
        sensor(fail_on_statuses=bad)


# -- transient and permanent errors --------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_transient_burst_mid_wait_is_retried_by_the_hook_then_the_sensor_keeps_waiting(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
    no_jitter: None,
    debug_logs: list[dict[str, Any]],
    status: int,
) -> None:
    # After the first poke (one in_progress seen), the next 8 GETs fail: the hook tries 6 times
    # (5 retries), gives up, the sensor logs a warning and pokes again; 2 more failures, then answers.
    step_id = slow_step_with_burst_after_first_wait(emulator, clock, status)

    result = sensor(step_id, poke_interval=5).execute(make_context())

    assert result["status"] == "completed"
    assert step_gets(emulator, "step_slow") == 1 + 8 + 3
    assert sleeps == [1, 2, 2, 2, 2, 1, 2]  # the hook's capped backoff (max_retry_wait=2)
    assert clock.sleeps == [5, 5, 5, 5]  # after in_progress, the failed poke, in_progress, in_progress
    warnings = log_text(debug_logs, "warning")
    assert "Still waiting on step step_slow after a transient error" in warnings
    assert f"HTTP {status}" in warnings


def test_retry_after_is_a_floor_for_the_next_poke(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
    no_jitter: None,
) -> None:
    emulator.state.add_fault(
        "status", path_contains=STEP_COMPLETES, status=429, headers={"Retry-After": "30"}, times=6
    )

    result = sensor(poke_interval=5).execute(make_context())

    assert result["status"] == "completed"
    assert sleeps == [2, 2, 2, 2, 2]  # Retry-After 30 beats the backoff, capped by max_retry_wait
    assert clock.sleeps == [30, 5, 5]  # then the sensor waits the full Retry-After once


def test_unauthorized_fails_at_once_with_the_hooks_message(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock, sleeps: list[float]
) -> None:
    emulator.state.api_keys = frozenset({"pk-some-other-key"})

    with pytest.raises(PortkeyAuthError) as raised:
        sensor().execute(make_context())

    assert "HTTP 401" in str(raised.value)
    assert "Invalid API Key" in str(raised.value)
    assert_no_secret(str(raised.value), repr(raised.value))
    assert emulator.state.request_count == 1
    assert sleeps == []
    assert clock.sleeps == []


def test_not_found_fails_at_once_with_the_hooks_message(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock, sleeps: list[float]
) -> None:
    with pytest.raises(PortkeyNotFoundError) as raised:
        sensor("step_missing").execute(make_context())

    assert "HTTP 404" in str(raised.value)
    assert "No run step found with id 'step_missing'" in str(raised.value)
    assert emulator.state.request_count == 1
    assert sleeps == []
    assert clock.sleeps == []


@pytest.mark.parametrize("rendered", [None, "None", "", "../runs"])
def test_an_id_that_rendered_badly_fails_naming_the_parameter_before_any_request(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock, rendered: Any
) -> None:
    task = sensor()
    task.run_id = rendered

    with pytest.raises(InvalidIdError, match=r"run_id (must be|is .*, not) an API id") as raised:
        task.execute(make_context())

    assert isinstance(raised.value, ValueError)
    assert emulator.state.request_count == 0


# -- a wrong URL fails the first look; an outage after it is waited out ---------------------------


@pytest.mark.parametrize("soft_fail", [False, True])
def test_a_first_look_refused_fails_at_once_naming_the_cause_and_the_connection(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    closed_port: int,
    clock: FakeClock,
    sleeps: list[float],
    soft_fail: bool,
) -> None:
    portkey_conn.set(monkeypatch, host=f"http://127.0.0.1:{closed_port}", max_retries=2)

    with pytest.raises(PortkeyError) as raised:
        sensor(timeout=3600, soft_fail=soft_fail).execute(make_context())

    message = str(raised.value)
    assert "first look, which reached no server" in message
    assert "Connection refused" in message
    assert "Airflow connection 'portkey_default'" in message
    assert len(sleeps) == 2  # the hook's own short retries, then no waiting at all
    assert clock.sleeps == []


def test_a_first_look_over_tls_to_a_plain_http_port_fails_at_once_naming_tls(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
) -> None:
    portkey_conn.set(monkeypatch, host=f"https://127.0.0.1:{emulator.port}", max_retries=0)

    with pytest.raises(PortkeyError, match=r"first look, which reached no server.*TLS failed"):
        sensor(timeout=3600).execute(make_context())

    assert clock.sleeps == []


def test_an_outage_after_the_first_look_reached_the_server_is_waited_out_until_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
) -> None:
    portkey_conn.set(monkeypatch, max_retries=1)
    clock.on_sleep(lambda count: emulator.stop() if count == 1 else None)  # down after the first look

    with pytest.raises(AirflowSensorTimeout) as raised:
        sensor(stuck(emulator), poke_interval=10, timeout=30).execute(make_context())

    message = str(raised.value)
    assert "last status seen: in_progress" in message
    assert "last error: " in message
    assert "Connection refused" in message
    assert clock.sleeps == [10, 10, 10]


def test_a_refused_look_after_an_earlier_reschedule_is_waited_out_as_an_outage(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    closed_port: int,
    clock: FakeClock,
    sleeps: list[float],
) -> None:
    portkey_conn.set(monkeypatch, host=f"http://127.0.0.1:{closed_port}", max_retries=0)
    earlier_look = FakeTaskInstance(first_reschedule_date=datetime.now(UTC) - timedelta(seconds=60))

    with pytest.raises(AirflowRescheduleException):  # not the first look of this wait: keep waiting
        sensor(mode="reschedule", poke_interval=30).execute(make_context(earlier_look))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}),
        (412, {"status": "failure", "message": "Budget limit exceeded for this workspace"}),
    ],
    ids=["429-insufficient-quota", "412-budget"],
)
def test_a_spent_quota_or_budget_fails_at_once_instead_of_waiting_until_the_timeout(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
    status: int,
    body: dict[str, Any],
) -> None:
    emulator.state.add_fault("status", path_contains=STEP_COMPLETES, status=status, body=body, times=100)

    with pytest.raises(PortkeyLimitExhaustedError, match="waiting does not help"):
        sensor(timeout=3600).execute(make_context())

    assert (step_gets(emulator, STEP_COMPLETES), sleeps, clock.sleeps) == (1, [], [])


# -- timeouts ------------------------------------------------------------------------------------


def test_a_timeout_shorter_than_the_poke_interval_is_honoured(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    with pytest.raises(AirflowSensorTimeout, match="last status seen: in_progress"):
        sensor(stuck(emulator), poke_interval=30, timeout=5).execute(make_context())

    assert clock.sleeps == [5]  # not a whole poke_interval: the last look comes at the deadline
    assert step_gets(emulator, "step_stuck") == 2


def test_the_hooks_retries_never_run_past_the_sensors_deadline(
    mocker: Any,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    no_jitter: None,
) -> None:
    mocker.patch("airflow_provider_portkey.hooks.portkey.time", clock)  # its retry waits are on the clock
    emulator.state.add_fault("status", path_contains=STEP_COMPLETES, status=503, times=1000)
    started = clock.now

    with pytest.raises(AirflowSensorTimeout, match=r"last error: .*HTTP 503"):
        sensor(poke_interval=5, timeout=10).execute(make_context())

    # Hook backoff 1, 2, 2, 2, 2 (max_retry_wait 2), a poke wait cut to the 1 s left, then one look
    # at the deadline whose retry would come after it: the wait ends exactly at its deadline.
    assert clock.sleeps == [1, 2, 2, 2, 2, 1]
    assert clock.now - started == 10


def test_timeout_fails_with_the_last_status_seen(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    with pytest.raises(AirflowSensorTimeout) as raised:
        sensor(stuck(emulator), poke_interval=10, timeout=25).execute(make_context())

    assert "last status seen: in_progress" in str(raised.value)
    assert "step_stuck" in str(raised.value)
    assert clock.sleeps == [10, 10, 5]
    assert step_gets(emulator, "step_stuck") == 4  # at 0, 10, 20 and 25 s: the last one at the deadline


def test_timeout_with_soft_fail_skips_with_the_last_status_seen(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    with pytest.raises(AirflowSkipException) as raised:
        sensor(stuck(emulator), poke_interval=10, timeout=25, soft_fail=True).execute(make_context())

    assert "last status seen: in_progress" in str(raised.value)
    assert "timed out" in str(raised.value)


def test_timeout_after_only_transient_errors_says_no_status_was_seen(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
    no_jitter: None,
) -> None:
    emulator.state.add_fault("status", path_contains=STEP_COMPLETES, status=503, times=1000)

    with pytest.raises(AirflowSensorTimeout, match="last status seen: None"):
        sensor(poke_interval=10, timeout=15).execute(make_context())


def test_soft_fail_also_skips_an_unsuccessful_step_keeping_its_status(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    with pytest.raises(AirflowSkipException, match="is failed: server_error"):
        sensor("step_fails", soft_fail=True).execute(make_context())


def test_exponential_backoff_waits_follow_airflows_own_schedule(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    emulator.state.add_step(
        SEED_THREAD_ID, SEED_RUN_ID, "step_slow", statuses=("in_progress",) * 4 + ("completed",)
    )
    task = sensor("step_slow", poke_interval=4, exponential_backoff=True)

    task.execute(make_context())

    # Airflow's backoff: poke n waits between 4 * 2**(n-2) and twice that (deterministic jitter).
    windows = [(2, 4), (4, 8), (8, 16), (16, 32)]
    assert len(clock.sleeps) == len(windows)
    for waited, (low, high) in zip(clock.sleeps, windows, strict=True):
        assert low <= waited < high


# -- reschedule mode -----------------------------------------------------------------------------


def test_reschedule_mode_frees_the_slot_while_the_step_is_in_progress(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    task = sensor(mode="reschedule", poke_interval=30)

    with pytest.raises(AirflowRescheduleException) as raised:
        task.execute(make_context())

    delay = (raised.value.reschedule_date - datetime.now(UTC)).total_seconds()
    assert 25 < delay <= 30
    assert clock.sleeps == []

    # The next tries (Airflow runs a fresh task; the first try's date comes from its records).
    first_try = FakeTaskInstance(first_reschedule_date=datetime.now(UTC))
    with pytest.raises(AirflowRescheduleException):
        sensor(mode="reschedule", poke_interval=30).execute(make_context(first_try))
    result = sensor(mode="reschedule", poke_interval=30).execute(make_context(first_try))
    assert result == as_sent(emulator, STEP_COMPLETES)


def test_reschedule_timeout_is_measured_from_the_first_try(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    step_id = stuck(emulator)
    recent = FakeTaskInstance(first_reschedule_date=datetime.now(UTC) - timedelta(seconds=50))
    with pytest.raises(AirflowRescheduleException):
        sensor(step_id, mode="reschedule", timeout=60).execute(make_context(recent))

    long_ago = FakeTaskInstance(first_reschedule_date=datetime.now(UTC) - timedelta(seconds=61))
    with pytest.raises(AirflowSensorTimeout, match="last status seen: in_progress"):
        sensor(step_id, mode="reschedule", timeout=60).execute(make_context(long_ago))


def test_reschedule_timeout_with_soft_fail_skips_with_the_last_status_seen(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    long_ago = FakeTaskInstance(first_reschedule_date=datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(AirflowSkipException, match="last status seen: in_progress"):
        sensor(stuck(emulator), mode="reschedule", timeout=3600, soft_fail=True).execute(
            make_context(long_ago)
        )
