"""RunSensor against the emulator, in poke and deferrable mode: the same results from the same mechanism.

Runs are created through the API (scripts chosen by assistant id) and move on per GET of the run.
Deferrable tests go the whole way Airflow goes (see ``tests.sensors.support.run_deferred``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import (
    ASST_DEMO,
    ASST_FAILS,
    ASST_INCOMPLETE,
    ASST_SLOW,
    ASST_TOOLS,
    EmulatorServer,
)
from airflow_provider_portkey.errors import (
    PortkeyConfigurationError,
    PortkeyError,
    PortkeyNotFoundError,
    RunUnsuccessfulError,
)
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models import Run
from airflow_provider_portkey.sensors.run import RunSensor
from airflow_provider_portkey.tracing import PortkeyLogsLink
from airflow_provider_portkey.triggers.run import RunTrigger
from tests.conftest import PortkeyConnection
from tests.sensors.support import TODAYS_PATH_KWARGS, FakeClock, defer, log_text, make_context, run_deferred
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.usefixtures("portkey_conn")

MODES = ("poke", "deferrable")


@dataclass
class TaskInstance:
    """A task instance with the ids a trace is derived from, recording XCom pushes."""

    dag_id: str = "agent_dag"
    run_id: str = "manual__2025-01-01T00:00:00+00:00"
    task_id: str = "wait_for_run"
    map_index: int = -1
    try_number: int = 1
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return None


def start(assistant_id: str = ASST_DEMO) -> Run:
    with PortkeyHook() as hook:
        return hook.create_thread_and_run(assistant_id)


def sensor(run: Run, mode: str, **kwargs: Any) -> RunSensor:
    options: dict[str, Any] = {"poke_interval": 5, "timeout": 600, "deferrable": mode == "deferrable"}
    options.update(kwargs)
    with DAG("run_sensor_tests", schedule=None):
        return RunSensor(task_id="wait_for_run", thread_id=run.thread_id, run_id=run.id, **options)


def wait(task: RunSensor, mode: str, context: Any = None) -> Any:
    """The sensor's result in ``mode``, the way Airflow gets it."""
    context = context or make_context()
    if mode == "poke":
        return task.execute(context)
    return run_deferred(task, context)[0]


def run_gets(emulator: EmulatorServer, run: Run) -> int:
    path = f"/v1/threads/{run.thread_id}/runs/{run.id}"
    return sum(1 for r in emulator.state.requests if r.method == "GET" and r.path == path)


@pytest.mark.parametrize("mode", MODES)
def test_waits_until_completed_and_returns_the_run_as_sent(
    emulator: EmulatorServer, clock: FakeClock, mode: str
) -> None:
    run = start()
    result = wait(sensor(run, mode), mode)
    assert result["status"] == "completed"
    assert result["id"] == run.id
    assert result == Run.from_api(result).to_json()
    assert run_gets(emulator, run) == 2  # in_progress, then completed
    assert clock.sleeps[0] == 5


@pytest.mark.parametrize("mode", MODES)
def test_requires_action_ends_the_wait_with_the_tool_calls(clock: FakeClock, mode: str) -> None:
    result = wait(sensor(start(ASST_TOOLS), mode), mode)
    assert result["status"] == "requires_action"
    [call] = result["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"


@pytest.mark.parametrize("mode", MODES)
def test_waiting_through_requires_action_times_out_naming_it(clock: FakeClock, mode: str) -> None:
    task = sensor(start(ASST_TOOLS), mode, stop_on_requires_action=False, timeout=60)
    with pytest.raises(AirflowSensorTimeout, match="last status seen: requires_action"):
        wait(task, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("assistant", "status", "why"),
    [(ASST_FAILS, "failed", "server_error"), (ASST_INCOMPLETE, "incomplete", "max_completion_tokens")],
)
def test_an_unsuccessful_run_fails_the_task_without_retries(
    clock: FakeClock, mode: str, assistant: str, status: str, why: str
) -> None:
    with pytest.raises(RunUnsuccessfulError) as raised:
        wait(sensor(start(assistant), mode), mode)
    assert isinstance(raised.value, AirflowFailException)
    assert f"is {status}: " in str(raised.value)
    assert why in str(raised.value)


@pytest.mark.parametrize("mode", MODES)
def test_with_no_fail_statuses_a_failed_run_is_returned_for_branching(clock: FakeClock, mode: str) -> None:
    result = wait(sensor(start(ASST_FAILS), mode, fail_on_statuses=()), mode)
    assert result["status"] == "failed"
    assert result["last_error"]["code"] == "server_error"


@pytest.mark.parametrize("mode", MODES)
def test_a_transient_burst_mid_wait_is_waited_out(
    emulator: EmulatorServer, clock: FakeClock, sleeps: list[float], mode: str
) -> None:
    run = start(ASST_SLOW)

    def burst(count: int) -> None:
        if count == 1:  # after the first wait: more 503s than the hook retries, asking for 30 s
            emulator.state.add_fault(
                "status", path_contains=f"/runs/{run.id}", status=503, headers={"Retry-After": "30"}, times=8
            )

    clock.on_sleep(burst)
    task = sensor(run, mode, timeout=3600)
    with pytest.raises(AirflowSensorTimeout, match="last status seen: in_progress"):
        wait(task, mode)
    assert 30 in clock.sleeps  # the next poll waited for the server's Retry-After


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_run_fails_at_once_with_the_hooks_message(
    emulator: EmulatorServer, clock: FakeClock, mode: str
) -> None:
    run = start()
    missing = Run.from_api({**run.to_json(), "id": "run_missing"})
    with pytest.raises(PortkeyNotFoundError, match="No run found with id 'run_missing'"):
        sensor(missing, mode).execute(make_context())
    assert clock.sleeps == []


@pytest.mark.parametrize("mode", MODES)
def test_timeout_with_soft_fail_skips_keeping_the_reason(clock: FakeClock, mode: str) -> None:
    task = sensor(start(ASST_SLOW), mode, timeout=30, soft_fail=True)
    with pytest.raises(AirflowSkipException, match=r"soft_fail: .*last status seen: in_progress"):
        wait(task, mode)


def test_bad_fail_on_statuses_are_refused_when_the_dag_is_parsed() -> None:
    run = Run.from_api({"id": "run_1", "object": "thread.run", "status": "queued", "thread_id": "thread_1"})
    with pytest.raises(PortkeyConfigurationError, match="requires_action"):
        sensor(run, "poke", fail_on_statuses=("requires_action",))


def test_deferral_hands_the_trigger_plain_kwargs_and_the_tasks_trace(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    run = start(ASST_SLOW)
    ti = TaskInstance()
    deferred = defer(sensor(run, "deferrable", timeout=120), make_context(ti))  # type: ignore[arg-type]
    trigger = deferred.trigger
    assert isinstance(trigger, RunTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_portkey.triggers.run.RunTrigger"
    trace = "airflow/agent_dag/manual__2025-01-01T00:00:00+00:00/wait_for_run/try-1"
    assert kwargs == {
        "portkey_conn_id": "portkey_default",
        "thread_id": run.thread_id,
        "run_id": run.id,
        "stop_on_requires_action": True,
        "cancel_on_kill": False,  # a sensor did not start the run: it never cancels it
        "deadline": clock.now + 120,
        "poll_interval": 5.0,
        "exponential_backoff": False,
        "max_wait": None,
        "fail_on_statuses": ["failed", "cancelled", "expired", "incomplete"],
        "last_status": "in_progress",
        "trace_id": trace,
        "metadata": {"dag_id": "agent_dag", "task_id": "wait_for_run", "run_id": ti.run_id},
        "polls_done": 1,
        "min_first_wait": 0.0,
        "max_retries": None,
        "max_retry_wait": None,
        # Today's path (no start_from_trigger): the trigger resumes the task on a worker.
        **TODAYS_PATH_KWARGS,
    }
    assert ti.pushed[PortkeyLogsLink().xcom_key] == "https://app.portkey.ai/logs?trace_id=" + trace.replace(
        "/", "%2F"
    ).replace(":", "%3A").replace("+", "%2B")


def test_the_trigger_polls_in_the_same_trace_as_the_task(emulator: EmulatorServer, clock: FakeClock) -> None:
    run = start()
    result, deferral = run_deferred(sensor(run, "deferrable"), make_context(TaskInstance()))  # type: ignore[arg-type]
    assert result["status"] == "completed"
    polls = [r for r in emulator.state.requests if r.method == "GET"]
    assert len(polls) == 2  # one by the task before deferring, one by the trigger
    assert {r.headers["x-portkey-trace-id"] for r in polls} == {deferral.trigger.trace_id}
    assert {json.loads(r.headers["x-portkey-metadata"])["task_id"] for r in polls} == {"wait_for_run"}


@pytest.mark.parametrize(
    "event",
    [None, {}, {"status": "done"}, {"status": "success"}, {"status": "success", "run": {"id": "x"}}],
)
def test_execute_complete_refuses_an_unknown_empty_or_bad_event(event: Any) -> None:
    run = Run.from_api({"id": "run_1", "object": "thread.run", "status": "queued", "thread_id": "thread_1"})
    with pytest.raises(PortkeyError, match="RunSensor got"):
        sensor(run, "deferrable").execute_complete(make_context(), event)


def test_execute_complete_refuses_a_success_event_for_a_run_still_in_progress() -> None:
    run = Run.from_api({"id": "run_1", "object": "thread.run", "status": "in_progress", "thread_id": "t"})
    event = {"status": "success", "run": run.to_json()}
    with pytest.raises(PortkeyError, match="still in_progress"):
        sensor(run, "deferrable").execute_complete(make_context(), event)


@pytest.mark.parametrize("mode", MODES)
def test_no_secret_in_logs_xcom_or_trigger_kwargs(
    emulator: EmulatorServer, clock: FakeClock, debug_logs: list[dict[str, Any]], mode: str
) -> None:
    run = start()
    emulator.state.add_fault("status", path_contains=f"/runs/{run.id}", status=503, times=2)
    task = sensor(run, mode)
    ti = TaskInstance()
    if mode == "poke":
        result: Any = task.execute(make_context(ti))  # type: ignore[arg-type]
        kwargs: Any = None
    else:
        result, deferral = run_deferred(task, make_context(ti))  # type: ignore[arg-type]
        kwargs = deferral.trigger.serialize()
    assert_no_secret(log_text(debug_logs), result, ti.pushed, kwargs)


@pytest.mark.usefixtures("sleeps")
def test_in_a_dag_the_run_json_is_return_value_and_the_link_is_pushed(
    airflow: Any, emulator: EmulatorServer, portkey_conn: PortkeyConnection
) -> None:
    run = start()
    with DAG("run_sensor_dag", schedule=None) as dag:
        RunSensor(task_id="wait_for_run", thread_id=run.thread_id, run_id=run.id, poke_interval=0.1)
    result = airflow.run(dag)
    assert result.task_states == {"wait_for_run": "success"}
    assert result.xcom("wait_for_run")["status"] == "completed"
    assert result.xcom("wait_for_run", PortkeyLogsLink().xcom_key).startswith(
        "https://app.portkey.ai/logs?trace_id=airflow%2Frun_sensor_dag%2F"
    )
