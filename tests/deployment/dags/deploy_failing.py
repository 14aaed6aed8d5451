"""A step that fails, waited on twice: once failing the task, once feeding a branch.

``wait_failing`` has ``retries=2``, yet a failed step fails it on its first try (a retry cannot
change a finished step) with the step's ``last_error`` in its log. ``wait_any_outcome`` waits on
a second failing step with ``fail_on_statuses=()``, so it succeeds with the step's JSON, and
``route`` takes the failure path.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task

from airflow_provider_portkey.sensors.run_step import RunStepSensor

DAG_ID = "deploy_failing_step"
THREAD_ID = "thread_deploy_failing"
RUN_ID = "run_deploy_failing"
FAILING_STEP = "step_deploy_fails"
OBSERVED_STEP = "step_deploy_fails_observed"
#: See deploy_mapped.POKE_INTERVAL (not imported: Airflow loads each DAG file on its own).
POKE_INTERVAL = 5
LAST_ERROR = {"code": "rate_limit_exceeded", "message": "Deployment tier: the assistant ran out of quota."}


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "deployment-tier"],
)
def deploy_failing_step() -> None:
    RunStepSensor(
        task_id="wait_failing",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        step_id=FAILING_STEP,
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        retries=2,
        retry_delay=timedelta(seconds=1),
        timeout=timedelta(minutes=10),
    )
    observed: Any = RunStepSensor(
        task_id="wait_any_outcome",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        step_id=OBSERVED_STEP,
        fail_on_statuses=(),
        deferrable=True,
        poke_interval=POKE_INTERVAL,
        timeout=timedelta(minutes=10),
    )

    @task.branch
    def route(step: dict[str, Any]) -> str:
        return "on_failure" if step["status"] == "failed" else "on_success"

    route(observed.output) >> [EmptyOperator(task_id="on_failure"), EmptyOperator(task_id="on_success")]


deploy_failing_step()
