"""Create-and-wait agent runs in a real deployment: one that ends, one killed while deferred, one retried.

``agent_done`` starts a run and waits for it on the triggerer. ``agent_killed`` starts a slow run;
the tier marks it failed through the REST API while it is deferred, and the trigger must cancel the
run. ``agent_retried`` runs on the thread given in the DAG run's conf; the tier makes the first look
at its run fail (404), so the task fails after creating the run; its retry must wait on that run
(Airflow 3.3, task state store) instead of starting a second one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag

from airflow_provider_portkey.operators.run import CreateRunOperator

DAG_ID = "deploy_durable"
KILLED_TASK = "agent_killed"
RETRIED_TASK = "agent_retried"


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "deployment-tier"],
)
def deploy_durable() -> None:
    # Polls every 8 s: a first event within seconds of the deferral can hit apache/airflow#67287 (the
    # scheduler fails the task on the stale "success" of the deferring worker; docs/reliability.md).
    options: dict[str, Any] = {
        "wait_for_completion": True,
        "deferrable": True,
        "poke_interval": 8,
        "timeout": 300,
    }
    CreateRunOperator(task_id="agent_done", assistant_id="asst_demo", **options)
    CreateRunOperator(task_id=KILLED_TASK, assistant_id="asst_slow", **options)
    CreateRunOperator(
        task_id=RETRIED_TASK,
        assistant_id="asst_demo",
        thread_id="{{ dag_run.conf['thread_id'] }}",
        retries=1,
        retry_delay=timedelta(seconds=1),
        **options,
    )


deploy_durable()
