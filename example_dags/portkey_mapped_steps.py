"""Wait on many run steps at once: dynamic task mapping over deferrable sensors.

``choose_steps`` returns the step ids to wait on (here from the ``step_ids`` param; in a real
pipeline, say, the steps an earlier task started). ``wait_for_step`` is a :class:`RunStepSensor`
mapped over them with ``.partial(...).expand(step_id=...)``: one deferrable sensor per step, each
waiting on the triggerer instead of holding a worker slot. ``collect_results`` then gets every
step's JSON, in the order of the ids, and returns each step's final status.

Any step that ends ``failed``, ``cancelled`` or ``expired`` fails its mapped sensor (the default
``fail_on_statuses``), so ``collect_results`` runs only when all of them completed.

The defaults are steps that the emulator bundled with this provider knows
(``python -m airflow_provider_portkey.emulator``): ``step_map_1`` .. ``step_map_3`` complete after
one, two and three polls.

Connection: ``portkey_default``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_portkey.sensors.run_step import RunStepSensor

log = logging.getLogger(__name__)


@dag(
    dag_id="portkey_mapped_steps",
    description="Wait on several Portkey run steps at once with mapped deferrable sensors",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "example"],
    params={
        "thread_id": Param("thread_demo", type="string", description="Thread of the run"),
        "run_id": Param("run_demo", type="string", description="Run the steps belong to"),
        "step_ids": Param(
            ["step_map_1", "step_map_2", "step_map_3"],
            type="array",
            items={"type": "string"},
            minItems=1,
            description="Run steps to wait on, one mapped sensor each",
        ),
    },
    doc_md=__doc__,
)
def portkey_mapped_steps() -> None:
    @task
    def choose_steps(params: dict[str, Any] | None = None) -> list[str]:
        assert params is not None  # Airflow passes the DAG's params into the task
        step_ids = [str(step_id) for step_id in params["step_ids"]]
        log.info("Waiting on %d steps: %s", len(step_ids), step_ids)
        return step_ids

    wait_for_step = RunStepSensor.partial(
        task_id="wait_for_step",
        portkey_conn_id="portkey_default",
        thread_id="{{ params.thread_id }}",
        run_id="{{ params.run_id }}",
        deferrable=True,
        poke_interval=1,  # short for the demo; minutes suit real agents
        timeout=timedelta(minutes=10),
    ).expand(step_id=choose_steps())

    @task
    def collect_results(steps: list[dict[str, Any]]) -> dict[str, str]:
        # A lazy sequence at run time: one slice fetches every mapped result in a single request.
        statuses = {step["id"]: step["status"] for step in steps[:]}
        log.info("Final statuses: %s", statuses)
        return statuses

    # An XComArg over the mapped sensors' results (typed Any: mypy cannot model that).
    results: Any = wait_for_step.output
    collect_results(results)


portkey_mapped_steps()
