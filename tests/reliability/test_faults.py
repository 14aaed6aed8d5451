"""Every fault of the catalogue through the hook, the sensor (poke and deferrable) and the operator.

Real sockets against the emulator (and, for a reset mid-response, a relay in front of it). The
connection allows 2 retries, so one check costs 3 attempts. Waits are recorded, never slept: the
hook's by ``sleeps`` (``time.sleep``), the sensor's and the trigger's (including the async hook's
retries) by ``clock``. Jitter is off, so the hook's backoff waits the top of its window: 1, 2.

- A transient fault the hook's retries absorb never reaches the task. One that outlasts them is
  logged by the sensor, which keeps waiting (never sooner than a ``Retry-After``) until the step
  ends or its timeout; the operator, which does not wait, fails with the hook's error.
- A bad answer (HTML or truncated JSON with a 200, JSON of the wrong shape, an empty body) is not
  retried: every caller fails at once with a ``PortkeyBadResponseError`` quoting an excerpt.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from email.utils import formatdate
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.errors import PortkeyBadResponseError, PortkeyError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook, close_shared_client
from tests.reliability.support import (
    ALL_FAULTS,
    ATTEMPTS,
    MAX_RETRIES,
    PERMANENT,
    POKE_INTERVAL,
    TRANSIENT,
    Env,
    FaultCase,
    R,
    T,
    as_sent,
    operator,
    parametrize_faults,
    sensor,
    step_gets,
    use_connection,
)
from tests.sensors.support import (
    FakeClock,
    FakeTaskInstance,
    defer,
    log_text,
    make_context,
    recreate_trigger,
    run_trigger,
)
from tests.support.secrets import assert_no_secret

STEP = "step_faulty"


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch, env: Env) -> Any:
    """Point ``portkey_default`` at the emulator (or the relay) with the fault's timeout, 2 retries."""

    def use(fault: FaultCase) -> None:
        host = env.relay.url if fault.via_relay else env.emulator.url
        use_connection(monkeypatch, host, max_retries=MAX_RETRIES, max_retry_wait=60, **fault.extra)

    return use


@pytest.fixture
def step(emulator: EmulatorServer, request: pytest.FixtureRequest) -> str:
    """The step under test: seen by the first check, then still running once, then done.

    Some faults spoil an answer the emulator already gave (a reset mid-response, a truncated or
    dripping body), so each of their attempts moves the step on: it then gets as many more
    ``in_progress`` statuses as a check has attempts.
    """
    callspec = getattr(request.node, "callspec", None)
    fault = callspec.params.get("fault") if callspec else None
    running = 2 + (ATTEMPTS if isinstance(fault, FaultCase) and fault.answered else 0)
    emulator.state.add_step(T, R, STEP, statuses=("in_progress",) * running + ("completed",))
    return STEP


def assert_clear(error: BaseException, fault: FaultCase) -> None:
    """The error is the fault's class and its message says what was asked and what went wrong."""
    assert type(error) is fault.error, repr(error)
    message = str(error)
    assert f"GET /threads/{T}/runs/{R}/steps/{STEP}" in message
    for part in fault.message:
        assert part in message, message
    assert_no_secret(message, repr(error))


def expected_wait_after_failed_check(fault: FaultCase) -> float:
    """What a sensor or trigger waits after a check whose retries all failed: a Retry-After is a floor."""
    return max(POKE_INTERVAL, fault.retry_after or 0.0)


# -- the hook ------------------------------------------------------------------------------------


HOOK_GAPS = [fault for fault in ALL_FAULTS if fault.hook_test is None]


@parametrize_faults(HOOK_GAPS)
def test_hook_retries_a_transient_fault_then_succeeds_or_fails_at_once_on_a_bad_answer(
    env: Env, connect: Any, step: str, sleeps: list[float], no_jitter: None, fault: FaultCase
) -> None:
    connect(fault)
    fault.inject(env, MAX_RETRIES)

    with PortkeyHook() as hook:
        if fault.transient:
            assert str(hook.get_run_step(T, R, step).status) == "in_progress"
            assert fault.hook_waits_ok(sleeps), sleeps
            assert step_gets(env.emulator, step) == ATTEMPTS
        else:
            with pytest.raises(PortkeyBadResponseError) as raised:
                hook.get_run_step(T, R, step)
            assert_clear(raised.value, fault)
            assert sleeps == []
            assert step_gets(env.emulator, step) == 1


@parametrize_faults([fault for fault in HOOK_GAPS if fault.transient])
def test_hook_gives_up_with_a_clear_error_when_its_retries_are_spent(
    env: Env, connect: Any, step: str, sleeps: list[float], no_jitter: None, fault: FaultCase
) -> None:
    connect(fault)
    fault.inject(env, 100)

    with PortkeyHook() as hook, pytest.raises(fault.error) as raised:
        hook.get_run_step(T, R, step)

    assert_clear(raised.value, fault)
    assert raised.value.transient
    assert fault.hook_waits_ok(sleeps), sleeps
    assert step_gets(env.emulator, step) == ATTEMPTS


def test_hook_waits_what_each_response_of_a_retry_after_sequence_asked(
    env: Env, monkeypatch: pytest.MonkeyPatch, step: str, sleeps: list[float], no_jitter: None
) -> None:
    use_connection(monkeypatch, env.emulator.url, max_retries=4, max_retry_wait=60)
    for status, retry_after in [
        (429, "3"),
        (429, formatdate(time.time() + 20, usegmt=True)),
        (503, "7"),
        (429, "0"),
    ]:
        env.emulator.state.add_fault("status", status=status, headers={"Retry-After": retry_after})

    with PortkeyHook() as hook:
        assert str(hook.get_run_step(T, R, step).status) == "in_progress"

    first, second, third, fourth = sleeps
    assert (first, third) == (3, 7)
    assert 17.5 <= second <= 20
    assert fourth == 8  # "0" asks for nothing: the backoff window of the 4th retry decides
    assert step_gets(env.emulator, step) == 5


@pytest.mark.asyncio
@pytest.mark.usefixtures("loop_client")
async def test_async_hook_waits_what_each_response_of_a_retry_after_sequence_asked(
    env: Env, monkeypatch: pytest.MonkeyPatch, step: str, clock: FakeClock, no_jitter: None
) -> None:
    use_connection(monkeypatch, env.emulator.url, max_retries=3, max_retry_wait=60)
    for status, retry_after in [(429, "3"), (503, formatdate(time.time() + 20, usegmt=True)), (429, "7")]:
        env.emulator.state.add_fault("status", status=status, headers={"Retry-After": retry_after})

    step_seen = await PortkeyAsyncHook().get_run_step(T, R, step)

    assert str(step_seen.status) == "in_progress"
    first, second, third = clock.sleeps
    assert (first, third) == (3, 7)
    assert 17.5 <= second <= 20


@pytest.mark.parametrize("via_async", [False, True], ids=["sync", "async"])
def test_a_slow_drip_within_the_read_timeout_arrives_whole(
    env: Env, monkeypatch: pytest.MonkeyPatch, step: str, sleeps: list[float], via_async: bool
) -> None:
    use_connection(monkeypatch, env.emulator.url, read_timeout=2, max_retries=0)
    env.emulator.state.add_fault("slow_drip", delay=0.005)
    started = time.monotonic()

    if via_async:

        async def fetch() -> dict[str, Any]:
            try:
                return (await PortkeyAsyncHook().get_run_step(T, R, step)).to_json()
            finally:
                await close_shared_client()

        got = asyncio.run(fetch())
    else:
        with PortkeyHook() as hook:
            got = hook.get_run_step(T, R, step).to_json()

    assert time.monotonic() - started > 0.1  # it did drip, in ~16-byte pieces
    assert got == as_sent(env.emulator, step)
    assert sleeps == []


# -- the sensor in poke mode ---------------------------------------------------------------------


def inject_after_first_sleep(clock: FakeClock, env: Env, fault: FaultCase, times: int) -> None:
    clock.on_sleep(lambda n: fault.inject(env, times) if n == 1 else None)


@parametrize_faults(TRANSIENT)
def test_poke_sensor_logs_a_transient_fault_that_outlasts_the_retries_and_keeps_waiting(
    env: Env,
    connect: Any,
    step: str,
    clock: FakeClock,
    sleeps: list[float],
    no_jitter: None,
    debug_logs: list[dict[str, Any]],
    fault: FaultCase,
) -> None:
    connect(fault)
    inject_after_first_sleep(clock, env, fault, ATTEMPTS)  # one whole check fails

    result = sensor(step).execute(make_context())

    assert result == as_sent(env.emulator, step)
    assert result["status"] == "completed"
    assert fault.hook_waits_ok(sleeps), sleeps
    first, after_fault, last = clock.sleeps
    assert (first, last) == (POKE_INTERVAL, POKE_INTERVAL)
    assert fault.floor_ok(after_fault, POKE_INTERVAL), clock.sleeps
    assert step_gets(env.emulator, step) == 1 + ATTEMPTS + 2
    warnings = log_text(debug_logs, "warning")
    assert f"Still waiting on step {step} after a transient error" in warnings
    for part in fault.message:
        assert part in warnings


@parametrize_faults([fault for fault in TRANSIENT if (fault.retry_after or 0) <= POKE_INTERVAL])
def test_poke_sensor_facing_only_transient_faults_times_out_saying_no_status_was_seen(
    env: Env,
    connect: Any,
    step: str,
    clock: FakeClock,
    sleeps: list[float],
    no_jitter: None,
    fault: FaultCase,
) -> None:
    connect(fault)
    fault.inject(env, 100)

    with pytest.raises(AirflowSensorTimeout) as raised:
        sensor(step, timeout=4).execute(make_context())

    assert "last status seen: None; last error: " in str(raised.value)
    assert clock.sleeps == [4]  # checked at 0 and at the deadline (4 s), not a whole interval later
    assert fault.hook_waits_ok(sleeps)  # the first check's retries; none at the deadline
    assert step_gets(env.emulator, step) == ATTEMPTS + 1


@parametrize_faults(PERMANENT)
def test_poke_sensor_fails_at_once_on_a_bad_answer(
    env: Env, connect: Any, step: str, clock: FakeClock, sleeps: list[float], fault: FaultCase
) -> None:
    connect(fault)
    inject_after_first_sleep(clock, env, fault, 1)

    with pytest.raises(PortkeyBadResponseError) as raised:
        sensor(step).execute(make_context())

    assert_clear(raised.value, fault)
    assert clock.sleeps == [POKE_INTERVAL]
    assert sleeps == []
    assert step_gets(env.emulator, step) == 2


# -- the sensor in deferrable mode (its trigger on an event loop) --------------------------------


def run_deferred_with(env: Env, fault: FaultCase, times: int, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Defer after one check, inject the fault, run the re-created trigger, resume a fresh copy."""
    task = sensor(STEP, deferrable=True, **kwargs)
    resumed = copy.deepcopy(task)
    deferred = defer(task, make_context())
    fault.inject(env, times)
    event = run_trigger(recreate_trigger(deferred.trigger))
    assert json.loads(json.dumps(event)) == event  # plain values, as the triggerer stores them
    return resumed, event


@parametrize_faults(TRANSIENT)
def test_deferred_sensor_rides_out_a_transient_fault_that_outlasts_the_retries(
    env: Env,
    connect: Any,
    step: str,
    clock: FakeClock,
    sleeps: list[float],
    no_jitter: None,
    debug_logs: list[dict[str, Any]],
    fault: FaultCase,
) -> None:
    connect(fault)

    resumed, event = run_deferred_with(env, fault, ATTEMPTS)
    result = resumed.resume_execution("execute_complete", {"event": event}, make_context())

    assert event["status"] == "success"
    assert result == as_sent(env.emulator, step)
    # The trigger's waits and the async hook's retry waits share asyncio.sleep, in order.
    wait_in, *retries, after_fault, last = clock.sleeps
    assert (wait_in, last) == (POKE_INTERVAL, POKE_INTERVAL)
    assert fault.hook_waits_ok(retries), clock.sleeps
    assert fault.floor_ok(after_fault, POKE_INTERVAL), clock.sleeps
    assert sleeps == []
    assert step_gets(env.emulator, step) == 1 + ATTEMPTS + 2
    warnings = log_text(debug_logs, "warning")
    assert f"Still waiting on step {step} after a transient error" in warnings


@parametrize_faults([fault for fault in TRANSIENT if (fault.retry_after or 0) <= POKE_INTERVAL])
def test_deferred_sensor_facing_only_transient_faults_times_out_saying_the_last_status(
    env: Env,
    connect: Any,
    step: str,
    clock: FakeClock,
    sleeps: list[float],
    no_jitter: None,
    fault: FaultCase,
) -> None:
    connect(fault)
    started = clock.now

    resumed, event = run_deferred_with(env, fault, 100, timeout=4)

    assert event["status"] == "timeout"
    assert event["last_status"] == "in_progress"  # what the check before deferring saw
    with pytest.raises(AirflowSensorTimeout, match="last status seen: in_progress"):
        resumed.resume_execution("execute_complete", {"event": event}, make_context())
    assert "; last error: " in event["message"]
    # To the deadline, then one look there: no retry of the trigger's hook would end before it.
    assert clock.sleeps == [4]
    assert clock.now == started + 4  # never past the deadline
    assert step_gets(env.emulator, step) == 2


@parametrize_faults(PERMANENT)
def test_deferred_sensor_fails_at_once_on_a_bad_answer(
    env: Env, connect: Any, step: str, clock: FakeClock, fault: FaultCase
) -> None:
    connect(fault)

    resumed, event = run_deferred_with(env, fault, 1)

    assert event["status"] == "error"
    with pytest.raises(PortkeyError) as raised:
        resumed.resume_execution("execute_complete", {"event": event}, make_context())
    for part in fault.message:
        assert part in str(raised.value)
    assert_no_secret(event, str(raised.value))
    assert clock.sleeps == [POKE_INTERVAL]
    assert step_gets(env.emulator, step) == 2


# -- the operator --------------------------------------------------------------------------------


@parametrize_faults(TRANSIENT)
def test_operator_returns_the_step_when_the_retries_absorb_a_transient_fault(
    env: Env, connect: Any, step: str, sleeps: list[float], no_jitter: None, fault: FaultCase
) -> None:
    connect(fault)
    fault.inject(env, MAX_RETRIES)
    ti = FakeTaskInstance()

    result = operator(step).execute(make_context(ti))

    assert result == as_sent(env.emulator, step)
    assert ti.pushed == {"status": "in_progress"}
    assert fault.hook_waits_ok(sleeps), sleeps


@parametrize_faults(ALL_FAULTS)
def test_operator_fails_with_the_hooks_clear_error_when_the_fault_outlasts_the_retries(
    env: Env, connect: Any, step: str, sleeps: list[float], no_jitter: None, fault: FaultCase
) -> None:
    connect(fault)
    fault.inject(env, 100)
    ti = FakeTaskInstance()

    with pytest.raises(fault.error) as raised:
        operator(step).execute(make_context(ti))

    assert_clear(raised.value, fault)
    assert ti.pushed == {}
    attempts = ATTEMPTS if fault.transient else 1
    assert step_gets(env.emulator, step) == attempts
    assert fault.hook_waits_ok(sleeps, attempts), sleeps
