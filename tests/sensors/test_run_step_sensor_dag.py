"""RunStepSensor run for real by Airflow (``dag.test()``): XCom, templating, reschedule, retries, secrets.

Each DAG runs in this process through Airflow's task runner against the session's throwaway
metadata DB (``airflow`` fixture); deferred tasks run their trigger inline. Poke and trigger waits
are on the fake ``clock``; Airflow's own loop sleeps are recorded by ``sleeps``.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_THREAD_ID, STEP_COMPLETES, EmulatorServer
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from tests.conftest import PortkeyConnection
from tests.sensors.dagrun import AirflowRuntime
from tests.sensors.support import FakeClock, log_text
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.usefixtures("portkey_conn", "clock", "sleeps")

MODES: dict[str, dict[str, Any]] = {
    "poke": {"mode": "poke", "deferrable": False, "poke_interval": 30},
    "reschedule": {"mode": "reschedule", "deferrable": False, "poke_interval": 0},
    "deferrable": {"mode": "poke", "deferrable": True, "poke_interval": 30},
    # dag.test() starts every task on its in-process "worker": this proves the sensor still works
    # there (and, on Airflow >= 3.3, that a trigger ending the task is handled by dag.test).
    "zero-worker": {"mode": "poke", "deferrable": True, "poke_interval": 30, "start_from_trigger": True},
}


def as_sent(emulator: EmulatorServer, step_id: str) -> dict[str, Any]:
    steps = emulator.state.list_steps(SEED_THREAD_ID, SEED_RUN_ID)
    assert steps is not None
    return next(step for step in steps if step["id"] == step_id)


def step_paths(emulator: EmulatorServer) -> set[str]:
    return {r.path for r in emulator.state.requests if "/steps/" in r.path}


@pytest.mark.parametrize("mode", MODES)
def test_xcom_return_value_is_exactly_the_step_json_in_every_mode(
    airflow: AirflowRuntime, emulator: EmulatorServer, mode: str
) -> None:
    with DAG(f"sensor_xcom_{mode}", schedule=None) as dag:
        wait = RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id=STEP_COMPLETES,
            **MODES[mode],
        )

        @task
        def downstream(step: dict[str, Any]) -> str:
            return str(step["status"])

        downstream(wait.output)  # type: ignore[arg-type]  # an XComArg resolves to the dict at run time

    result = airflow.run(dag)

    assert result.task_states == {"wait": "success", "downstream": "success"}
    assert result.xcom("wait") == as_sent(emulator, STEP_COMPLETES)
    assert result.xcom("downstream") == "completed"


def test_reschedule_mode_counts_its_timeout_from_the_first_try(
    airflow: AirflowRuntime, emulator: EmulatorServer, mocker: Any
) -> None:
    starts: list[float] = []
    original = RunStepSensor._start_time

    def record(self: RunStepSensor, context: Any) -> float:
        starts.append(original(self, context))
        return starts[-1]

    mocker.patch.object(RunStepSensor, "_start_time", record)
    with DAG("sensor_reschedule_tries", schedule=None) as dag:
        RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id=STEP_COMPLETES,
            **MODES["reschedule"],
        )

    result = airflow.run(dag)

    assert result.task_states == {"wait": "success"}
    assert len(starts) == 3  # in_progress, in_progress (both rescheduled), completed
    assert starts[1] == starts[2]  # the later tries start from the first try's date, from Airflow's records
    assert abs(starts[1] - starts[0]) < 5


@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_ids_templated_from_an_upstream_xcom_render_and_are_used(
    airflow: AirflowRuntime, emulator: EmulatorServer, mode: str
) -> None:
    emulator.state.add_step("thread_from_xcom", "run_from_xcom", "step_from_xcom")
    with DAG(f"sensor_templated_{mode}", schedule=None) as dag:

        @task
        def start_agent() -> dict[str, str]:
            return {"thread": "thread_from_xcom", "run": "run_from_xcom", "step": "step_from_xcom"}

        wait = RunStepSensor(
            task_id="wait",
            thread_id="{{ ti.xcom_pull(task_ids='start_agent')['thread'] }}",
            run_id="{{ ti.xcom_pull(task_ids='start_agent')['run'] }}",
            step_id="{{ ti.xcom_pull(task_ids='start_agent')['step'] }}",
            **MODES[mode],
        )
        start_agent() >> wait

    result = airflow.run(dag)

    assert result.task_states == {"start_agent": "success", "wait": "success"}
    assert step_paths(emulator) == {"/v1/threads/thread_from_xcom/runs/run_from_xcom/steps/step_from_xcom"}
    assert result.xcom("wait")["id"] == "step_from_xcom"
    assert result.rendered["wait"] == {
        "thread_id": "thread_from_xcom",
        "run_id": "run_from_xcom",
        "step_id": "step_from_xcom",
        "include": None,
        "portkey_conn_id": "portkey_default",
        "trace_id": None,  # unset: the trace id is derived from the task instance
    }


@pytest.mark.parametrize(("native", "shown"), [(False, "'None'"), (True, "None")])
def test_a_template_rendering_to_none_fails_naming_the_parameter_before_any_request(
    airflow: AirflowRuntime,
    emulator: EmulatorServer,
    debug_logs: list[dict[str, Any]],
    native: bool,
    shown: str,
) -> None:
    with DAG(f"sensor_none_{native}", schedule=None, render_template_as_native_obj=native) as dag:
        # One XCom (the dict): inferred multiple outputs would also push ``run`` as its own XCom, and
        # Airflow 3.0's execution API rejects a None XCom value (HTTP 422), failing this task instead.
        @task(multiple_outputs=False)
        def start_agent() -> dict[str, Any]:
            return {"run": None}

        wait = RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id="{{ ti.xcom_pull(task_ids='start_agent')['run'] }}",
            step_id=STEP_COMPLETES,
            retries=2,
            retry_delay=timedelta(0),
            **MODES["poke"],
        )
        start_agent() >> wait

    result = airflow.run(dag)

    assert result.task_states["wait"] in ("failed", "up_for_retry")
    assert emulator.state.request_count == 0
    errors = log_text(debug_logs, "error")
    assert f"InvalidIdError: run_id is {shown}, not an API id" in errors
    assert "xcom_pull() from a task that pushed no such XCom" in errors


def test_a_failed_step_fails_the_task_once_without_using_its_retries(
    airflow: AirflowRuntime, emulator: EmulatorServer, debug_logs: list[dict[str, Any]]
) -> None:
    with DAG("sensor_no_retry", schedule=None) as dag:
        RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id="step_fails",
            retries=3,
            retry_delay=timedelta(0),
            **MODES["deferrable"],
        )

    result = airflow.run(dag)

    assert result.state == "failed"
    assert result.task_states == {"wait": "failed"}
    assert len([r for r in emulator.state.requests if r.path.endswith("/step_fails")]) == 2  # one try
    errors = log_text(debug_logs, "error")
    assert "RunStepUnsuccessfulError" in errors
    assert "is failed: server_error: Sorry, something went wrong." in errors


def test_a_connection_without_api_key_fails_naming_it_and_nothing_else(
    airflow: AirflowRuntime,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    debug_logs: list[dict[str, Any]],
) -> None:
    fields = {**portkey_conn.fields, "password": ""}
    monkeypatch.setenv("AIRFLOW_CONN_PORTKEY_DEFAULT", json.dumps(fields))
    with DAG("sensor_no_api_key", schedule=None) as dag:
        RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id=STEP_COMPLETES,
            **MODES["poke"],
        )

    result = airflow.run(dag)

    assert result.task_states == {"wait": "failed"}
    errors = log_text(debug_logs, "error")
    assert "Airflow connection 'portkey_default': Portkey connection field 'password' is empty" in errors
    # The "Portkey logs" link was never published: no second error about its missing XCom.
    assert "XCom not found" not in log_text(debug_logs)
    assert emulator.state.request_count == 0


def test_soft_fail_timeout_skips_the_task_with_the_last_status_seen(
    airflow: AirflowRuntime, emulator: EmulatorServer, debug_logs: list[dict[str, Any]]
) -> None:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_stuck", statuses=("in_progress",))
    with DAG("sensor_soft_fail", schedule=None) as dag:
        RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id="step_stuck",
            timeout=100,
            soft_fail=True,
            **MODES["deferrable"],
        )

    result = airflow.run(dag)

    assert result.task_states == {"wait": "skipped"}
    assert "last status seen: in_progress" in log_text(debug_logs)


def test_no_secret_reaches_xcom_rendered_fields_or_the_logs_of_a_real_run(
    airflow: AirflowRuntime,
    emulator: EmulatorServer,
    clock: FakeClock,
    debug_logs: list[dict[str, Any]],
    all_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    no_jitter: None,
) -> None:
    # A transient burst during the deferred wait, then a permanent error in a second sensor.
    clock.on_sleep(
        lambda n: (
            emulator.state.add_fault("status", path_contains=STEP_COMPLETES, status=503, times=7)
            if n == 1
            else None
        )
    )
    with DAG("sensor_secrets", schedule=None) as dag:
        wait = RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id=STEP_COMPLETES,
            **MODES["deferrable"],
        )
        missing = RunStepSensor(
            task_id="missing",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id="step_missing",
            **MODES["poke"],
        )
        wait >> missing

    result = airflow.run(dag)

    assert result.task_states == {"wait": "success", "missing": "failed"}
    text = log_text(debug_logs)
    assert "transient error" in text
    assert "PortkeyNotFoundError" in text
    captured = capsys.readouterr()
    # The events are raw (before Airflow's masking); the only ones allowed to carry a secret are
    # Airflow's own debug lines about registering it for masking (``MaskSecret`` messages).
    unmasked = [event for event in debug_logs if "MaskSecret(" not in repr(event.get("msg"))]
    assert len(unmasked) < len(debug_logs)
    assert_no_secret(
        result.xcoms,
        result.rendered,
        log_text(unmasked),
        captured.out,
        captured.err,
        all_logs.text,
        [record.getMessage() for record in all_logs.records],
        repr(dag.task_dict["wait"]),
    )
