"""RunStepSensor in deferrable mode: execute -> TaskDeferred -> trigger (re-created via serde) -> resume.

Each test goes the whole way Airflow goes, against the live emulator: the trigger is serialized
and re-created from its classpath, run to its one event on a fresh event loop, the event goes
through Airflow's serde and ``resume_execution`` runs on a fresh copy of the sensor.
"""

from __future__ import annotations

from datetime import timedelta
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
    STEP_INSTANT,
    EmulatorServer,
)
from airflow_provider_portkey.errors import PortkeyError, RunStepUnsuccessfulError
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from airflow_provider_portkey.triggers.run_step import RunStepTrigger
from tests.conftest import PortkeyConnection
from tests.sensors.support import (
    TODAYS_PATH_KWARGS,
    UNSUCCESSFUL_STEPS,
    FakeClock,
    as_sent,
    defer,
    make_context,
    plain,
    recreate_trigger,
    run_deferred,
    run_step_sensor,
    run_trigger,
    slow_step_with_burst_after_first_wait,
    step_gets,
    stuck,
)
from tests.support.airflow_compat import TaskDeferralError
from tests.support.secrets import assert_no_secret


def sensor(step_id: str = STEP_COMPLETES, **kwargs: Any) -> RunStepSensor:
    """A deferrable sensor on the seeded thread and run."""
    options: dict[str, Any] = {"poke_interval": 5, "timeout": 600, "deferrable": True}
    return run_step_sensor("sensor_deferrable_tests", step_id, options | kwargs)


# -- the deferral itself -------------------------------------------------------------------------


def test_execute_checks_once_then_defers_to_a_trigger_with_plain_kwargs(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    task = sensor(poke_interval=7, timeout=120, exponential_backoff=True, max_wait=60)

    deferred = defer(task, make_context())

    assert step_gets(emulator, STEP_COMPLETES) == 1
    assert isinstance(deferred.trigger, RunStepTrigger)
    assert deferred.method_name == "execute_complete"
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == "airflow_provider_portkey.triggers.run_step.RunStepTrigger"
    assert plain(kwargs)
    assert kwargs == {
        "portkey_conn_id": "portkey_default",
        "thread_id": SEED_THREAD_ID,
        "run_id": SEED_RUN_ID,
        "step_id": STEP_COMPLETES,
        "deadline": clock.now + 120,
        "poll_interval": 7.0,
        "exponential_backoff": True,
        "max_wait": 60.0,
        "include": [],
        "fail_on_statuses": ["failed", "cancelled", "expired"],
        "last_status": "in_progress",
        "trace_id": None,
        "metadata": {},  # a bare context: no task ids to derive a trace from
        "polls_done": 1,
        "min_first_wait": 0.0,
        "max_retries": None,
        "max_retry_wait": None,
        # Today's path (no start_from_trigger): the trigger resumes the task on a worker.
        **TODAYS_PATH_KWARGS,
    }
    # Airflow's own deferral timeout is only a safety net behind the trigger's deadline.
    assert deferred.timeout is not None
    assert deferred.timeout > timedelta(seconds=120)


def test_trigger_kwargs_round_trip_through_serde_and_recreate_the_same_trigger(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    include = "step_details.tool_calls[*].file_search.results[*].content"
    deferred = defer(sensor(include=[include], fail_on_statuses=("failed",)), make_context())

    recreated = recreate_trigger(deferred.trigger)

    assert isinstance(recreated, RunStepTrigger)
    assert recreated.deadline == deferred.trigger.deadline
    assert recreated.include == [include]
    assert recreated.fail_on_statuses == ["failed"]


def test_a_templated_include_rendered_to_one_string_is_not_split_into_characters(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    include = "step_details.tool_calls[*].file_search.results[*].content"
    task = sensor()
    task.include = include  # what rendering "{{ params.include }}" leaves behind

    deferred = defer(task, make_context())

    assert deferred.trigger.serialize()[1]["include"] == [include]


def test_deadline_is_absolute_so_a_recreated_trigger_keeps_it(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    deferred = defer(sensor(stuck(emulator), timeout=300), make_context())
    deadline = clock.now + 300

    clock.advance(3600)  # the triggerer restarts an hour later
    recreated = recreate_trigger(deferred.trigger)

    assert recreated.deadline == deadline


def test_a_step_already_terminal_returns_without_deferring(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    result = sensor(STEP_INSTANT).execute(make_context())

    assert result == as_sent(emulator, STEP_INSTANT)
    assert step_gets(emulator, STEP_INSTANT) == 1


@pytest.mark.parametrize(("step_id", "status"), [("step_fails", "failed"), ("step_instant", "completed")])
def test_a_step_already_terminal_follows_fail_on_statuses_without_deferring(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock, step_id: str, status: str
) -> None:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, step_id, statuses=(status,))
    if status == "failed":
        with pytest.raises(RunStepUnsuccessfulError, match="is failed"):
            sensor(step_id).execute(make_context())
    assert sensor(step_id, fail_on_statuses=()).execute(make_context())["status"] == status


# -- all the way through the trigger -------------------------------------------------------------


def test_deferred_wait_through_in_progress_returns_the_completed_step_json(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    result, deferral = run_deferred(sensor(poke_interval=7), make_context())

    assert result == as_sent(emulator, STEP_COMPLETES)
    assert deferral.event["status"] == "success"
    assert deferral.event["step"] == result
    # One check in execute, then the trigger waits one poke interval before each of its polls.
    assert step_gets(emulator, STEP_COMPLETES) == 3
    assert clock.sleeps == [7, 7]


@pytest.mark.parametrize(("step_id", "status", "error_parts"), UNSUCCESSFUL_STEPS)
def test_deferred_unsuccessful_status_fails_without_retry_naming_status_and_last_error(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    step_id: str,
    status: str,
    error_parts: list[str],
) -> None:
    with pytest.raises(RunStepUnsuccessfulError) as raised:
        run_deferred(sensor(step_id), make_context())

    assert isinstance(raised.value, AirflowFailException)
    assert raised.value.deferral.event["status"] == "failure"  # type: ignore[attr-defined]
    assert f"is {status}" in str(raised.value)
    for part in error_parts:
        assert part in str(raised.value)


@pytest.mark.parametrize(("step_id", "status", "error_parts"), UNSUCCESSFUL_STEPS)
def test_deferred_empty_fail_on_statuses_succeeds_with_the_json(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    step_id: str,
    status: str,
    error_parts: list[str],
) -> None:
    result, deferral = run_deferred(sensor(step_id, fail_on_statuses=()), make_context())

    assert deferral.event["status"] == "success"
    assert result["status"] == status
    assert result == as_sent(emulator, step_id)


@pytest.mark.parametrize("status", [503, 429])
def test_deferred_transient_burst_mid_wait_is_retried_then_the_trigger_keeps_waiting(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    no_jitter: None,
    status: int,
) -> None:
    # The sensor's check sees in_progress; during the trigger's first wait 8 failures are queued.
    step_id = slow_step_with_burst_after_first_wait(emulator, clock, status)

    result, deferral = run_deferred(sensor(step_id, poke_interval=5), make_context())

    assert result["status"] == "completed"
    assert deferral.event["status"] == "success"
    assert step_gets(emulator, "step_slow") == 1 + 8 + 3
    # Trigger waits (5) and the async hook's capped retry backoff (1, 2, 2, ...), in order.
    assert clock.sleeps == [5, 1, 2, 2, 2, 2, 5, 1, 2, 5, 5]


def test_deferred_unauthorized_fails_at_once_with_the_hooks_message(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    task = sensor()
    deferred = defer(task, make_context())  # the key is revoked while the task is deferred
    emulator.state.api_keys = frozenset({"pk-some-other-key"})
    before = emulator.state.request_count

    event = run_trigger(recreate_trigger(deferred.trigger))
    assert event["status"] == "error"
    assert "HTTP 401" in event["message"]
    assert emulator.state.request_count == before + 1
    with pytest.raises(PortkeyError, match="HTTP 401") as raised:
        task.resume_execution("execute_complete", {"event": event}, make_context())
    assert not isinstance(raised.value, AirflowFailException | AirflowSkipException)
    assert_no_secret(str(raised.value), event)


def test_deferred_not_found_fails_at_once_with_the_hooks_message(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_gone", statuses=("in_progress",))
    task = sensor("step_gone")
    deferred = defer(task, make_context())
    emulator.state.reset()  # the step disappears while the task is deferred

    event = run_trigger(recreate_trigger(deferred.trigger))
    assert event["status"] == "error"
    assert emulator.state.request_count == 1
    assert clock.sleeps == [5]
    with pytest.raises(PortkeyError, match=r"HTTP 404.*No run step found with id 'step_gone'"):
        task.resume_execution("execute_complete", {"event": event}, make_context())


def test_a_permanent_error_fails_even_with_soft_fail_as_in_poke_mode(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    event = {"status": "error", "message": "GET /threads/...: not found; HTTP 404"}

    with pytest.raises(PortkeyError, match="HTTP 404") as raised:
        sensor(soft_fail=True).resume_execution("execute_complete", {"event": event}, make_context())

    assert not isinstance(raised.value, AirflowSkipException)


def test_a_first_look_that_reaches_no_server_fails_before_deferring_naming_the_cause(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    closed_port: int,
    clock: FakeClock,
    sleeps: list[float],
) -> None:
    portkey_conn.set(monkeypatch, host=f"http://127.0.0.1:{closed_port}", max_retries=1)

    with pytest.raises(PortkeyError, match="first look, which reached no server") as raised:
        sensor(timeout=3600).execute(make_context())  # no TaskDeferred: nothing to wait for

    assert "Connection refused" in str(raised.value)
    assert clock.sleeps == []


def test_the_triggers_hook_retries_never_run_past_the_deadline(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock, no_jitter: None
) -> None:
    step_id = stuck(emulator)
    clock.on_sleep(
        lambda count: (
            emulator.state.add_fault("status", path_contains=step_id, status=503, times=1000)
            if count == 1
            else None
        )
    )
    started = clock.now

    with pytest.raises(AirflowSensorTimeout, match=r"last status seen: in_progress; last error: .*HTTP 503"):
        run_deferred(sensor(step_id, poke_interval=5, timeout=10), make_context())

    # The trigger's wait (5), the async hook's backoff 1, 2 until a retry would pass the deadline,
    # a wait cut to the 2 s left, one look at the deadline: it ends exactly there.
    assert clock.sleeps == [5, 1, 2, 2]
    assert clock.now - started == 10


def test_deferred_timeout_fails_with_the_last_status_seen(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    with pytest.raises(AirflowSensorTimeout) as raised:
        run_deferred(sensor(stuck(emulator), poke_interval=10, timeout=25), make_context())

    assert raised.value.deferral.event["status"] == "timeout"  # type: ignore[attr-defined]
    assert "last status seen: in_progress" in str(raised.value)
    assert "step_stuck" in str(raised.value)
    # Checked at 0 (execute), 10, 20 and at the deadline (25), as in poke mode but never past it.
    assert clock.sleeps == [10, 10, 5]
    assert step_gets(emulator, "step_stuck") == 4


def test_deferred_timeout_with_soft_fail_skips_with_the_last_status_seen(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    with pytest.raises(AirflowSkipException) as raised:
        run_deferred(sensor(stuck(emulator), poke_interval=10, timeout=25, soft_fail=True), make_context())

    assert "last status seen: in_progress" in str(raised.value)


def test_a_step_that_finishes_at_the_deadline_wins_over_the_timeout(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    emulator.state.add_step(
        SEED_THREAD_ID, SEED_RUN_ID, "step_late", statuses=("in_progress",) * 3 + ("completed",)
    )

    result, _ = run_deferred(sensor("step_late", poke_interval=10, timeout=25), make_context())

    assert result["status"] == "completed"


def test_retry_after_from_the_check_before_deferring_is_the_floor_of_the_first_wait(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
    no_jitter: None,
) -> None:
    emulator.state.add_fault(
        "status", path_contains=STEP_COMPLETES, status=429, headers={"Retry-After": "45"}, times=6
    )

    result, deferral = run_deferred(sensor(poke_interval=5), make_context())

    assert deferral.trigger.min_first_wait == 45
    assert result["status"] == "completed"
    assert clock.sleeps == [45, 5, 5]


# -- execute_complete with bad events -------------------------------------------------------------

STEP = {"id": "step_x", "object": "thread.run.step", "status": "completed"}


@pytest.mark.parametrize(
    "event",
    [
        None,
        {},
        {"status": "weird"},
        {"status": "success"},
        {"status": "success", "step": None},
        {"status": "success", "step": "completed"},
        {"status": "success", "step": ["not", "a", "dict"]},
        {"status": "success", "step": {**STEP, "status": "exploded"}},
        {"status": "success", "step": {"status": "completed"}},
        {"status": "success", "step": {**STEP, "status": "in_progress"}},
        "success",
        [],
    ],
    ids=repr,
)
def test_execute_complete_rejects_unknown_or_empty_events_loudly(event: Any) -> None:
    with pytest.raises(PortkeyError, match="RunStepSensor got"):
        sensor(soft_fail=True).resume_execution("execute_complete", {"event": event}, make_context())


def test_execute_complete_returns_a_good_events_step_exactly() -> None:
    step = {**STEP, "future": {"a": [1, None]}, "metadata": None}

    result = sensor().execute_complete(make_context(), {"status": "success", "step": step})

    assert result == step


def test_execute_complete_decides_failure_by_the_sensors_own_fail_on_statuses() -> None:
    step = {**STEP, "status": "failed", "last_error": {"code": "server_error", "message": "Boom."}}
    event = {"status": "failure", "step": step, "message": "..."}

    with pytest.raises(RunStepUnsuccessfulError, match=r"is failed: server_error: Boom\."):
        sensor().execute_complete(make_context(), event)
    assert sensor(fail_on_statuses=()).execute_complete(make_context(), event) == step


def test_a_trigger_crash_or_airflow_deferral_timeout_keeps_airflows_handling() -> None:
    from airflow.sdk.bases.operator import TriggerFailureReason

    with pytest.raises(AirflowSensorTimeout):
        sensor().resume_execution("__fail__", {"error": TriggerFailureReason.TRIGGER_TIMEOUT}, make_context())
    with pytest.raises(TaskDeferralError):
        sensor().resume_execution("__fail__", {"error": "Trigger failure"}, make_context())


def test_never_fail_skips_a_permanent_error_at_the_first_check_as_in_poke_mode(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, clock: FakeClock
) -> None:
    poke_mode = sensor("step_missing", never_fail=True, deferrable=False)
    with pytest.raises(AirflowSkipException):
        poke_mode.execute(make_context())

    with pytest.raises(AirflowSkipException, match=r"never_fail: .*HTTP 404"):
        sensor("step_missing", never_fail=True).execute(make_context())


def test_never_fail_skips_an_error_event_keeping_its_message() -> None:
    event = {"status": "error", "message": "GET /threads/...: not found; HTTP 404"}

    with pytest.raises(AirflowSkipException, match=r"never_fail: .*HTTP 404"):
        sensor(never_fail=True).resume_execution("execute_complete", {"event": event}, make_context())
