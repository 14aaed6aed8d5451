"""Sensors that wait with no worker at all (``start_from_trigger``, Airflow >= 3.3).

``wait_completed`` succeeds with its step's JSON; its ids are templates (``params``), so the
triggerer must render them. ``wait_response`` waits on a background response whose id comes from
the DAG run's conf, and must push the Responses XComs (``status``, ``output_text``, ``usage``).
``wait_failed`` fails on a ``failed`` step (``retries=0``: the triggerer ends it).
``wait_timeout`` waits on a step that never ends, past its ``timeout``. ``wait_mapped`` is mapped:
Airflow starts mapped tasks on a worker, which defers to a trigger that ends the task (one launch
per map index). On older Airflow the same DAG takes today's path (a worker checks, defers and
resumes).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag

from airflow_provider_portkey.sensors.response import ResponseSensor
from airflow_provider_portkey.sensors.run_step import RunStepSensor

DAG_ID = "deploy_zero_worker"
THREAD_ID = "thread_deploy_zero_worker"
RUN_ID = "run_deploy_zero_worker"
COMPLETED_STEP = "step_zero_worker_completes"
FAILED_STEP = "step_zero_worker_fails"
ENDLESS_STEP = "step_zero_worker_never_ends"
#: See deploy_mapped.POKE_INTERVAL (not imported: Airflow loads each DAG file on its own).
POKE_INTERVAL = 5
TIMEOUT_SECONDS = 12
LAST_ERROR = {"code": "server_error", "message": "Deployment tier: the zero-worker step failed."}
MAPPED_STEPS = ("step_zero_worker_mapped_0", "step_zero_worker_mapped_1", "step_zero_worker_mapped_2")
#: The tasks that start on the triggerer (Airflow >= 3.3).
TASK_IDS = ("wait_completed", "wait_response", "wait_failed", "wait_timeout")


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"thread": THREAD_ID, "run": RUN_ID, "step": COMPLETED_STEP},
    tags=["portkey", "deployment-tier"],
)
def deploy_zero_worker() -> None:
    common: dict[str, Any] = {
        "deferrable": True,
        "start_from_trigger": True,
        "poke_interval": POKE_INTERVAL,
        "retries": 0,
    }
    RunStepSensor(
        task_id="wait_completed",
        thread_id="{{ params.thread }}",
        run_id="{{ params.run }}",
        step_id="{{ params.step }}",
        timeout=timedelta(minutes=10),
        **common,
    )
    ResponseSensor(
        task_id="wait_response",
        response_id="{{ dag_run.conf['response_id'] }}",
        timeout=timedelta(minutes=10),
        **common,
    )
    RunStepSensor(
        task_id="wait_failed",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        step_id=FAILED_STEP,
        fail_on_statuses=("failed",),
        timeout=timedelta(minutes=10),
        **common,
    )
    RunStepSensor(
        task_id="wait_timeout",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        step_id=ENDLESS_STEP,
        timeout=timedelta(seconds=TIMEOUT_SECONDS),
        **common,
    )
    RunStepSensor.partial(
        task_id="wait_mapped",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        timeout=timedelta(minutes=10),
        **common,
    ).expand(step_id=list(MAPPED_STEPS))


deploy_zero_worker()
