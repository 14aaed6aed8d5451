"""Triggers that end the task themselves (``end_task``) or that the scheduler started (Airflow >= 3.3)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from airflow_provider_portkey._compat import ZERO_WORKER_WAITS
from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.emulator.background import MODEL_COMPLETES, MODEL_FAILS, MODEL_SLOW
from airflow_provider_portkey.errors import PortkeyConfigurationError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import close_shared_client
from airflow_provider_portkey.models_response import Response
from airflow_provider_portkey.polling import DEFERRAL_GRACE
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from airflow_provider_portkey.triggers import base as trigger_module  # its `time` is the clock
from airflow_provider_portkey.triggers.response import ResponseTrigger
from tests.sensors.support import FakeClock, log_text, recreate_trigger
from tests.support.airflow_compat import AIRFLOW_VERSION

pytestmark = pytest.mark.usefixtures("portkey_conn")


def start(model: str) -> Response:
    with PortkeyHook() as hook:
        return hook.create_response({"model": model, "input": "Hi"})


#: What a triggerer sets on a trigger it runs for a task (dag.test() sets none).
TASK_INSTANCE = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=3, try_number=1)


def ending_trigger(response: Response, *, wait: float = 600, **kwargs: Any) -> ResponseTrigger:
    trigger = ResponseTrigger(
        response_id=response.id,
        deadline=trigger_module.time.time() + wait,  # type: ignore[attr-defined]
        poll_interval=5.0,
        fail_on_statuses=["failed", "cancelled", "incomplete"],
        end_task=True,
        timeout=wait,
        **kwargs,
    )
    trigger.task_instance = TASK_INSTANCE  # type: ignore[assignment]
    return trigger


def only_event(trigger: ResponseTrigger) -> TriggerEvent:
    async def main() -> TriggerEvent:
        try:
            events = [event async for event in trigger.run()]
        finally:
            await close_shared_client()
        assert len(events) == 1, events
        return events[0]

    return asyncio.run(main())


def test_success_pushes_the_xcoms_a_worker_pushes_through_the_task_sdk_then_ends_the_task(
    emulator: EmulatorServer, clock: FakeClock, mocker: Any
) -> None:
    # The seam: the triggerer's channel to the API server (the deployment tier runs it for real).
    pushed = mocker.patch("airflow.sdk.execution_time.xcom.XCom.set")
    response = start(MODEL_COMPLETES)
    trigger = recreate_trigger(ending_trigger(response, retries=0))
    trigger.task_instance = TASK_INSTANCE  # type: ignore[assignment]  # lost in the round trip
    event = only_event(trigger)
    assert isinstance(event, TaskSuccessEvent)
    # Not in the event: Airflow 3.3.2 would store those JSON-encoded twice.
    assert event.xcoms is None
    with PortkeyHook() as hook:  # finished: the API sends the same JSON again
        finished = hook.get_response(response.id)
    where = {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": 3}
    expected = {"return_value": finished.to_json(), **finished.xcoms()}
    assert {call.args[0]: call.args[1] for call in pushed.call_args_list} == expected
    assert all(call.kwargs == where for call in pushed.call_args_list)
    assert set(expected) == {"return_value", "status", "output_text", "usage"}


def test_without_a_task_instance_as_in_dag_test_the_task_resumes_with_the_event(
    clock: FakeClock, mocker: Any
) -> None:
    pushed = mocker.patch("airflow.sdk.execution_time.xcom.XCom.set")
    response = start(MODEL_COMPLETES)
    trigger = ending_trigger(response, retries=0)
    trigger.task_instance = None
    event = only_event(trigger)
    assert type(event) is TriggerEvent
    assert event.payload["status"] == "success"
    assert event.payload["response"]["id"] == response.id
    assert not pushed.called  # the resumed task pushes its XComs itself


def test_a_status_to_fail_on_fails_the_task_here_only_without_retries(clock: FakeClock) -> None:
    assert isinstance(only_event(ending_trigger(start(MODEL_FAILS), retries=0)), TaskFailedEvent)
    # With retries, only a worker can fail it without a retry: the task resumes there.
    resumed = only_event(ending_trigger(start(MODEL_FAILS), retries=2))
    assert type(resumed) is TriggerEvent
    assert resumed.payload["status"] == "failure"


def test_soft_fail_skips_a_timed_out_wait(clock: FakeClock, debug_logs: list[Any]) -> None:
    event = only_event(ending_trigger(start(MODEL_SLOW), wait=30, soft_fail=True, retries=3))
    assert isinstance(event, TaskSkippedEvent)
    assert "Skipping due to soft_fail: Sensor has timed out after 30 s" in log_text(debug_logs)


def test_a_started_trigger_takes_its_deadline_from_airflows_timeout_and_its_trace_from_the_task(
    clock: FakeClock,
) -> None:
    response = start(MODEL_SLOW)
    trigger = ending_trigger(response, wait=30, start_from_trigger=True)
    trigger.deadline = None
    now = trigger_module.time.time()  # type: ignore[attr-defined]
    trigger.timeout_after = datetime.fromtimestamp(now, UTC) + timedelta(seconds=30) + DEFERRAL_GRACE  # type: ignore[attr-defined]
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1)
    trigger.task_instance = ti  # type: ignore[assignment]  # what the triggerer sets
    trigger._take_over_task()
    assert trigger.deadline == pytest.approx(now + 30)
    assert trigger.trace_id == "airflow/d/r/t/try-1"
    assert trigger.metadata == {"dag_id": "d", "task_id": "t", "run_id": "r"}


def test_a_sensor_asking_to_start_on_the_triggerer_hands_the_scheduler_its_unrendered_kwargs_on_3_3() -> None:
    """Before Airflow 3.3 the same sensor keeps today's path: a worker checks, defers and resumes."""
    sensor = RunStepSensor(
        task_id="wait",
        thread_id="{{ params.thread }}",
        run_id="run_1",
        step_id="step_1",
        deferrable=True,
        start_from_trigger=True,
        timeout=120,
        retries=0,
    )
    args = sensor.start_trigger_args
    if not ZERO_WORKER_WAITS:
        assert AIRFLOW_VERSION.release < (3, 3)
        assert (sensor.start_from_trigger, sensor.ends_on_triggerer, args) == (False, False, None)
        return
    assert args is not None
    assert args.trigger_kwargs is not None
    assert args.trigger_cls == "airflow_provider_portkey.triggers.run_step.RunStepTrigger"
    assert args.next_method == "execute_complete"
    kwargs = args.trigger_kwargs
    assert (kwargs["thread_id"], kwargs["deadline"], kwargs["start_from_trigger"]) == (
        "{{ params.thread }}",
        None,
        True,
    )
    assert (kwargs["end_task"], kwargs["timeout"], kwargs["retries"]) == (True, 120, 0)
    assert args.timeout == timedelta(seconds=120) + DEFERRAL_GRACE
    # Read on the class (what a mapped task does), nothing: a mapped sensor starts on a worker.
    assert RunStepSensor.start_trigger_args is None


def test_without_opting_in_the_sensor_keeps_todays_path() -> None:
    sensor = RunStepSensor(task_id="wait", thread_id="t", run_id="r", step_id="s", deferrable=True)
    assert (sensor.start_from_trigger, sensor.ends_on_triggerer, sensor.start_trigger_args) == (
        False,
        False,
        None,
    )


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (
            {"start_from_trigger": "yes", "deferrable": True},
            "start_from_trigger must be True or False, got 'yes'",
        ),
        (
            {"start_from_trigger": True, "deferrable": False},
            "start_from_trigger=True .* needs deferrable=True",
        ),
    ],
)
def test_a_bad_start_from_trigger_fails_when_the_dag_is_parsed(arguments: dict[str, Any], named: str) -> None:
    with pytest.raises(PortkeyConfigurationError, match=named):
        RunStepSensor(task_id="wait", thread_id="t", run_id="r", step_id="s", **arguments)
