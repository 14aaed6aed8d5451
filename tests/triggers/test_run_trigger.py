"""RunTrigger on a real event loop against the emulator: its one event, its kwargs, its trace."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_portkey.emulator import ASST_DEMO, ASST_FAILS, ASST_SLOW, ASST_TOOLS, EmulatorServer
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models import Run
from airflow_provider_portkey.triggers import base as trigger_module  # its `time` is the clock
from airflow_provider_portkey.triggers.run import RunTrigger
from tests.sensors.support import FakeClock, plain, recreate_trigger, run_trigger

pytestmark = pytest.mark.usefixtures("portkey_conn")


def start(assistant_id: str = ASST_DEMO) -> Run:
    with PortkeyHook() as hook:
        return hook.create_thread_and_run(assistant_id)


def trigger(run: Run, *, wait: float = 600, **kwargs: Any) -> RunTrigger:
    options: dict[str, Any] = {"poll_interval": 5.0, "fail_on_statuses": ["failed", "cancelled"]}
    options.update(kwargs)
    return RunTrigger(
        portkey_conn_id="portkey_default",
        thread_id=run.thread_id,
        run_id=run.id,
        deadline=trigger_module.time.time() + wait,  # type: ignore[attr-defined]
        **options,
    )


def test_kwargs_are_plain_and_round_trip_through_serde(clock: FakeClock) -> None:
    run = start()
    subject = trigger(run, stop_on_requires_action=False, trace_id="t-1", metadata={"dag_id": "d"})
    recreated = recreate_trigger(subject)
    assert recreated.stop_on_requires_action is False
    assert (recreated.trace_id, recreated.metadata) == ("t-1", {"dag_id": "d"})
    assert plain(subject.serialize()[1])


def test_success_event_carries_the_completed_run(emulator: EmulatorServer, clock: FakeClock) -> None:
    run = start()
    payload = run_trigger(trigger(run))
    assert payload["status"] == "success"
    assert payload["run"]["status"] == "completed"
    assert payload["message"] == f"run {run.id} (thread {run.thread_id}) is completed"
    assert clock.sleeps == [5.0]


def test_requires_action_is_an_outcome_unless_waited_through(clock: FakeClock) -> None:
    assert run_trigger(trigger(start(ASST_TOOLS)))["run"]["status"] == "requires_action"
    payload = run_trigger(trigger(start(ASST_TOOLS), stop_on_requires_action=False, wait=60))
    assert (payload["status"], payload["last_status"]) == ("timeout", "requires_action")


def test_a_failed_run_is_a_failure_event_with_its_json(clock: FakeClock) -> None:
    payload = run_trigger(trigger(start(ASST_FAILS)))
    assert payload["status"] == "failure"
    assert payload["run"]["last_error"]["code"] == "server_error"


def test_timeout_event_names_the_last_status(clock: FakeClock) -> None:
    payload = run_trigger(trigger(start(ASST_SLOW), wait=20))
    assert payload["status"] == "timeout"
    assert "last status seen: in_progress" in payload["message"]
    assert sum(clock.sleeps) <= 20


def test_a_permanent_error_is_an_error_event_at_once(clock: FakeClock) -> None:
    run = Run.from_api({**start().to_json(), "id": "run_missing"})
    payload = run_trigger(trigger(run))
    assert payload["status"] == "error"
    assert "HTTP 404" in payload["message"]
    assert clock.sleeps == []


def test_every_poll_carries_the_deferring_tasks_trace_and_metadata(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    run = start()
    run_trigger(trigger(run, trace_id="airflow/d/r/t/try-1", metadata={"dag_id": "d", "task_id": "t"}))
    polls = [r for r in emulator.state.requests if r.method == "GET"]
    assert {r.headers["x-portkey-trace-id"] for r in polls} == {"airflow/d/r/t/try-1"}
    assert {r.headers["x-portkey-metadata"] for r in polls} == {
        json.dumps({"dag_id": "d", "task_id": "t"}, separators=(",", ":"))
    }
