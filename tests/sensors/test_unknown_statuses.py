"""A status the provider does not know (self-hosted servers have their own) in every sensor mode.

Rule (statuses.py): not final; the wait warns once per status and goes on until a known final
status or the timeout, unless the user lists the status in ``fail_on_statuses``, which makes it
final and failing. A typo of a known status in ``fail_on_statuses`` is still refused.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout

from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_THREAD_ID, EmulatorServer
from airflow_provider_portkey.errors import PortkeyConfigurationError, RunStepUnsuccessfulError
from airflow_provider_portkey.sensors.run import RunSensor
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from tests.sensors.support import (
    FakeClock,
    make_context,
    run_deferred,
    run_step_sensor,
    step_gets,
)

STEP = "step_odd"
WARNING = "has status 'incomplete', which this provider does not know"


def odd_step(emulator: EmulatorServer, *statuses: str) -> str:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, STEP, statuses=statuses)
    return STEP


def sensor(mode: str, **kwargs: Any) -> RunStepSensor:
    options: dict[str, Any] = {"poke_interval": 5, "timeout": 600, "deferrable": mode == "deferrable"}
    options["mode"] = "poke"
    return run_step_sensor(f"unknown_status_{mode}", STEP, options | kwargs)


def wait(task: RunStepSensor, mode: str) -> Any:
    if mode == "deferrable":
        return run_deferred(task, make_context())[0]
    return task.execute(make_context())


MODES = ["poke", "deferrable"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.usefixtures("portkey_conn")
def test_an_unknown_status_is_waited_through_with_one_warning(
    emulator: EmulatorServer, clock: FakeClock, debug_logs: list[Any], mode: str
) -> None:
    odd_step(emulator, "in_progress", "incomplete", "incomplete", "incomplete", "completed")

    result = wait(sensor(mode), mode)

    assert result["status"] == "completed"
    assert step_gets(emulator, STEP) == 5
    warnings = [str(e["event"]) for e in debug_logs if e.get("log_level") == "warning" and WARNING in str(e)]
    assert len(warnings) == 1
    assert "fail_on_statuses" in warnings[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.usefixtures("portkey_conn")
def test_an_unknown_status_listed_in_fail_on_statuses_ends_the_wait_as_a_failure(
    emulator: EmulatorServer, clock: FakeClock, mode: str
) -> None:
    odd_step(emulator, "in_progress", "incomplete", "completed")

    with pytest.raises(RunStepUnsuccessfulError, match=f"run step {STEP} .* is incomplete"):
        wait(sensor(mode, fail_on_statuses=("failed", "incomplete")), mode)
    assert step_gets(emulator, STEP) == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.usefixtures("portkey_conn")
def test_a_step_stuck_in_an_unknown_status_times_out_naming_it(
    emulator: EmulatorServer, clock: FakeClock, mode: str
) -> None:
    odd_step(emulator, "incomplete")
    with pytest.raises(AirflowSensorTimeout, match="last status seen: incomplete"):
        wait(sensor(mode, timeout=30), mode)


@pytest.mark.parametrize("status", ["incomplete", "timed_out", "error", "aborted"])
def test_statuses_the_provider_does_not_know_may_be_listed(status: str) -> None:
    assert status in sensor("poke", fail_on_statuses=("failed", status)).fail_on_statuses


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("faild", "looks like a typo of 'failed'"),
        ("canceled", "looks like a typo of 'cancelled'"),
        ("Failed", "is not a status name"),
        ("", "is not a status name"),
        ("completed", "never ends a wait unsuccessfully"),
        ("queued", "never ends a wait unsuccessfully"),
    ],
)
def test_typos_and_statuses_that_cannot_mean_failure_are_still_refused(bad: str, why: str) -> None:
    with pytest.raises(PortkeyConfigurationError, match=f"fail_on_statuses has '{bad}', which {why}"):
        sensor("poke", fail_on_statuses=("failed", bad))


def test_a_run_sensor_takes_its_own_unknown_statuses_too() -> None:
    task = RunSensor(task_id="wait_run", thread_id="thread_1", run_id="run_1", fail_on_statuses=["paused"])
    assert task.fail_on_statuses == ("paused",)
    with pytest.raises(PortkeyConfigurationError, match="typo of 'expired'"):
        RunSensor(task_id="wait_run", thread_id="thread_1", run_id="run_1", fail_on_statuses=["expird"])
