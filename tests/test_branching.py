"""The idiomatic branch on how an agent's run step ended, run for real with ``dag.test()``.

A RunStepSensor with ``fail_on_statuses=()`` (or a GetRunStepOperator) hands the step JSON to a
``@task.branch`` that routes on its ``status`` to a success path or a failure path; the path not
taken is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_THREAD_ID, EmulatorServer
from airflow_provider_portkey.operators.run_step import STATUS_XCOM_KEY, GetRunStepOperator
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from tests.sensors.dagrun import AirflowRuntime, airflow_runtime
from tests.sensors.support import clock

__all__ = ["clock"]

pytestmark = pytest.mark.usefixtures("portkey_conn", "clock", "sleeps")

OUTCOMES = {
    "step_completes": ("completed", "on_success", "on_failure"),
    "step_fails": ("failed", "on_failure", "on_success"),
    "step_cancelled": ("cancelled", "on_failure", "on_success"),
}


@pytest.fixture
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowRuntime]:
    """Airflow pointed at the session's throwaway metadata DB for ``dag.test()`` runs (this test only)."""
    yield from airflow_runtime(tmp_path_factory)


def with_paths(step: Any, route: Any) -> None:
    """``route`` (a @task.branch) picks one of two reporting tasks, each getting the step JSON."""

    @task
    def on_success(step: dict[str, Any]) -> str:
        return f"{step['id']} produced {step['step_details']['type']}"

    @task
    def on_failure(step: dict[str, Any]) -> str:
        error = step.get("last_error") or {}
        return f"{step['id']} ended {step['status']} ({error.get('code')})"

    route >> [on_success(step), on_failure(step)]


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
@pytest.mark.parametrize("step_id", OUTCOMES)
def test_sensor_then_branch_routes_on_the_final_status(
    airflow: AirflowRuntime, emulator: EmulatorServer, step_id: str, deferrable: bool
) -> None:
    status, taken, skipped = OUTCOMES[step_id]
    with DAG(f"branch_sensor_{step_id}_{deferrable}", schedule=None) as dag:
        wait = RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id=step_id,
            fail_on_statuses=(),
            poke_interval=30,
            deferrable=deferrable,
        )

        @task.branch
        def route(step: dict[str, Any]) -> str:
            return "on_success" if step["status"] == "completed" else "on_failure"

        step: Any = wait.output
        with_paths(step, route(step))

    result = airflow.run(dag)

    assert result.state == "success"
    assert result.task_states == {"wait": "success", "route": "success", taken: "success", skipped: "skipped"}
    assert result.xcom("wait")["status"] == status
    if status == "failed":
        assert result.xcom(taken) == "step_fails ended failed (server_error)"
    elif status == "completed":
        assert result.xcom(taken) == "step_completes produced message_creation"


@pytest.mark.parametrize(
    ("status", "taken", "skipped"),
    [("completed", "on_success", "on_failure"), ("failed", "on_failure", "on_success")],
)
def test_get_run_step_then_branch_on_its_status_key(
    airflow: AirflowRuntime, emulator: EmulatorServer, status: str, taken: str, skipped: str
) -> None:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_done", statuses=(status,))
    with DAG(f"branch_operator_{status}", schedule=None) as dag:
        get_step = GetRunStepOperator(
            task_id="get_step", thread_id=SEED_THREAD_ID, run_id=SEED_RUN_ID, step_id="step_done"
        )

        @task.branch
        def route(ti: Any = None) -> str:
            done = ti.xcom_pull(task_ids="get_step", key=STATUS_XCOM_KEY) == "completed"
            return "on_success" if done else "on_failure"

        step: Any = get_step.output
        with_paths(step, get_step >> route())

    result = airflow.run(dag)

    assert result.task_states == {
        "get_step": "success",
        "route": "success",
        taken: "success",
        skipped: "skipped",
    }
    assert result.xcom("get_step", STATUS_XCOM_KEY) == status


def test_the_default_sensor_fails_the_run_instead_of_branching(
    airflow: AirflowRuntime, emulator: EmulatorServer
) -> None:
    with DAG("branch_default_fails", schedule=None) as dag:
        wait = RunStepSensor(
            task_id="wait",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id="step_fails",
            poke_interval=30,
        )

        @task.branch
        def route(step: dict[str, Any]) -> str:
            return "on_success" if step["status"] == "completed" else "on_failure"

        step: Any = wait.output
        with_paths(step, route(step))

    result = airflow.run(dag)

    assert result.state == "failed"
    assert result.task_states["wait"] == "failed"
    assert result.task_states["route"] == "upstream_failed"
