"""A triggerer restart in the middle of a deferred wait: the re-created trigger keeps its deadline.

The sensor defers; its trigger's kwargs go through ``airflow.sdk.serde`` as the triggerer stores
them; a first triggerer runs the trigger and is stopped (its task cancelled) halfway through a
wait; after some downtime a second triggerer re-creates the trigger from the stored classpath and
kwargs and runs it to its event. Time is a fake clock, so "the timeout arrives at the original
deadline" is measured exactly, without waiting.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.hooks.portkey_async import close_shared_client
from airflow_provider_portkey.triggers.run_step import RunStepTrigger
from tests.reliability.support import R, T, sensor, step_gets, use_connection
from tests.sensors.support import FakeClock, defer, first_event_payload, make_context
from tests.support.airflow_compat import deserialize, import_string, serialize

REAL_SLEEP = asyncio.sleep
POKE, TIMEOUT, DOWNTIME = 30.0, 100.0, 20.0


@pytest.mark.parametrize(
    ("statuses", "outcome"),
    [
        (("in_progress",), "timeout"),
        (("in_progress",) * 3 + ("completed",), "success"),  # done exactly at the deadline: it wins
    ],
    ids=["still-running", "finishes-at-the-deadline"],
)
def test_a_trigger_recreated_after_a_restart_mid_wait_keeps_its_original_deadline(
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    mocker: Any,
    statuses: tuple[str, ...],
    outcome: str,
) -> None:
    use_connection(monkeypatch, emulator.url, max_retries=0)
    emulator.state.add_step(T, R, "step_restart", statuses=statuses)
    task = sensor("step_restart", deferrable=True, poke_interval=POKE, timeout=TIMEOUT)
    deadline = clock.now + TIMEOUT

    deferred = defer(task, make_context())  # the sensor's own check, at 0 s
    classpath, kwargs = deferred.trigger.serialize()
    stored = serialize(kwargs)  # what the triggerer keeps in the metadata DB
    restored = deserialize(stored)
    assert isinstance(restored, dict)

    # The first triggerer: the trigger waits 30 s, polls, and is halfway through its next wait
    # (45 s after the check) when the triggerer stops and its task is cancelled.
    fake_sleep = asyncio.sleep
    here = threading.current_thread()
    stopped_mid_wait = threading.Event()

    async def sleep(seconds: float, result: Any = None) -> Any:
        if threading.current_thread() is here and len(clock.sleeps) == 1 and not stopped_mid_wait.is_set():
            clock.advance(seconds / 2)
            stopped_mid_wait.set()
            await REAL_SLEEP(3600)  # cancelled long before
        return await fake_sleep(seconds, result)

    mocker.patch("asyncio.sleep", sleep)

    async def first_triggerer() -> None:
        trigger = import_string(classpath)(**restored)
        running = asyncio.create_task(first_event_payload(trigger))
        while not stopped_mid_wait.is_set():
            await REAL_SLEEP(0.01)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await close_shared_client()

    asyncio.run(asyncio.wait_for(first_triggerer(), timeout=30))
    assert clock.now == pytest.approx(deadline - TIMEOUT + 45)
    assert step_gets(emulator, "step_restart") == 2

    clock.advance(DOWNTIME)  # the triggerer is down for 20 s

    async def second_triggerer() -> Any:
        trigger = import_string(classpath)(**restored)
        assert isinstance(trigger, RunStepTrigger)
        assert trigger.deadline == deadline
        assert trigger.serialize() == (classpath, kwargs)
        try:
            return await first_event_payload(trigger)
        finally:
            await close_shared_client()

    event = asyncio.run(asyncio.wait_for(second_triggerer(), timeout=30))

    # Re-created at 65 s: it waits 30 s, polls at 95 s, waits only the 5 s left, polls at the
    # deadline, and ends there: not a second early, not a second late.
    assert clock.sleeps[-2:] == [POKE, pytest.approx(5.0)]
    assert clock.now == pytest.approx(deadline)
    assert step_gets(emulator, "step_restart") == 4
    assert event["status"] == outcome
    resumed = sensor("step_restart", deferrable=True, poke_interval=POKE, timeout=TIMEOUT)
    if outcome == "timeout":
        assert event["last_status"] == "in_progress"
        with pytest.raises(AirflowSensorTimeout, match="last status seen: in_progress"):
            resumed.resume_execution("execute_complete", {"event": event}, make_context())
    else:
        result = resumed.resume_execution("execute_complete", {"event": event}, make_context())
        assert result["status"] == "completed"
