"""Orchestrate a whole agent run: start it, wait, answer its tool calls, walk its steps, branch on it.

1. ``start_run`` (:class:`CreateRunOperator`) starts a run on a new thread with the question;
   it pushes ``thread_id`` and ``run_id`` for the tasks below.
2. ``wait_for_run`` (:class:`RunSensor`, deferrable) waits on the triggerer until the run ends or
   ``requires_action`` (``fail_on_statuses=()``: the branches decide what a failure means).
3. ``route`` branches: a run asking for tool outputs goes to ``compute_tool_outputs``, a Python
   task that runs the requested function (here a stub ``get_weather``), then
   ``submit_tool_outputs`` (:class:`SubmitToolOutputsOperator`) and ``wait_after_tools`` (a second
   ``RunSensor``, waiting until the run ends); any other run goes straight to ``no_tool_calls``.
4. ``list_steps`` (:class:`ListRunStepsOperator`) returns the run's steps; ``get_step``
   (:class:`GetRunStepOperator`, mapped with ``.expand()``) fetches each one by id.
5. ``branch_on_outcome`` routes on the run's final status to ``report_answer`` (with every
   step's status) or ``report_failure`` (with ``last_error``).

Every request carries a Portkey trace id derived from its task try, and every Portkey task has a
"Portkey logs" button in Airflow opening that trace.

The defaults work against the emulator bundled with this provider
(``python -m airflow_provider_portkey.emulator``): assistant ``asst_tools`` asks for
``get_weather`` once, ``asst_demo`` answers at once, ``asst_fails`` fails.

Connection: ``portkey_default``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, dag, task

from airflow_provider_portkey.operators.run import (
    CreateRunOperator,
    ListRunStepsOperator,
    SubmitToolOutputsOperator,
)
from airflow_provider_portkey.operators.run_step import GetRunStepOperator
from airflow_provider_portkey.sensors.run import RunSensor

log = logging.getLogger(__name__)

THREAD_ID = "{{ ti.xcom_pull(task_ids='start_run', key='thread_id') }}"
RUN_ID = "{{ ti.xcom_pull(task_ids='start_run', key='run_id') }}"


def get_weather(city: str) -> dict[str, Any]:
    """The function the assistant may call: a stub standing in for a real lookup."""
    return {"city": city, "temperature_c": 18, "conditions": "sunny"}


def step_id_of(step: dict[str, Any]) -> str:
    return str(step["id"])


def wait_on_run(task_id: str, *, stop_on_requires_action: bool) -> RunSensor:
    """A deferrable RunSensor on the started run; the branches decide what a failed run means."""
    return RunSensor(
        task_id=task_id,
        portkey_conn_id="portkey_default",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        stop_on_requires_action=stop_on_requires_action,
        fail_on_statuses=(),
        deferrable=True,
        # Short for the demo; agents usually take longer. Not below a few seconds: Airflow (3.0 to
        # 3.3 at least) can fail a deferred task whose trigger fires before the scheduler has seen
        # the worker exit when it deferred (apache/airflow#67287).
        poke_interval=5,
        timeout=timedelta(minutes=30),
    )


@dag(
    dag_id="portkey_agent_workflow",
    description="Start an agent run, answer its tool calls, walk its steps and branch on its outcome",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "example", "agents"],
    params={
        "assistant_id": Param("asst_tools", type="string", description="Assistant to run"),
        "question": Param("What is the weather in Paris?", type="string", description="The user's message"),
    },
    doc_md=__doc__,
)
def portkey_agent_workflow() -> None:
    start_run = CreateRunOperator(
        task_id="start_run",
        portkey_conn_id="portkey_default",
        assistant_id="{{ params.assistant_id }}",
        thread={"messages": [{"role": "user", "content": "{{ params.question }}"}]},
    )
    wait_for_run = wait_on_run("wait_for_run", stop_on_requires_action=True)
    run_json: Any = wait_for_run.output  # the run's JSON at run time

    @task.branch
    def route(run: dict[str, Any]) -> str:
        return "compute_tool_outputs" if run["status"] == "requires_action" else "no_tool_calls"

    @task
    def compute_tool_outputs(run: dict[str, Any]) -> dict[str, str]:
        """Run each requested function; outputs are strings, so structured results are JSON."""
        outputs = {}
        for call in run["required_action"]["submit_tool_outputs"]["tool_calls"]:
            name, arguments = call["function"]["name"], json.loads(call["function"]["arguments"])
            if name != "get_weather":
                raise ValueError(f"the assistant asked for an unknown function {name!r}")
            outputs[call["id"]] = json.dumps(get_weather(**arguments))
        log.info("Answering %d tool calls", len(outputs))
        return outputs

    tool_outputs = compute_tool_outputs(run_json)
    submit = SubmitToolOutputsOperator(
        task_id="submit_tool_outputs",
        portkey_conn_id="portkey_default",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        tool_outputs=tool_outputs,
    )
    wait_after_tools = wait_on_run("wait_after_tools", stop_on_requires_action=False)
    no_tool_calls = EmptyOperator(task_id="no_tool_calls")

    list_steps = ListRunStepsOperator(
        task_id="list_steps",
        portkey_conn_id="portkey_default",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        trigger_rule="none_failed_min_one_success",  # after whichever path ran
    )
    # Airflow maps over return values only: the step ids come from the steps' JSON.
    step_ids: Any = list_steps.output.map(step_id_of)
    get_step = GetRunStepOperator.partial(
        task_id="get_step", portkey_conn_id="portkey_default", thread_id=THREAD_ID, run_id=RUN_ID
    ).expand(step_id=step_ids)

    @task.branch
    def branch_on_outcome(ti: Any = None) -> str:
        run = ti.xcom_pull(task_ids="wait_after_tools") or ti.xcom_pull(task_ids="wait_for_run")
        return "report_answer" if run["status"] == "completed" else "report_failure"

    @task
    def report_answer(steps: list[dict[str, Any]]) -> dict[str, str]:
        statuses = {step["id"]: f"{step['type']}: {step['status']}" for step in steps[:]}
        log.info("The run completed with steps %s", statuses)
        return statuses

    @task
    def report_failure(ti: Any = None) -> dict[str, Any]:
        run = ti.xcom_pull(task_ids="wait_after_tools") or ti.xcom_pull(task_ids="wait_for_run")
        log.warning("Run %s ended %s: %s", run["id"], run["status"], run.get("last_error"))
        return {"run_id": run["id"], "status": run["status"], "last_error": run.get("last_error")}

    step_results: Any = get_step.output
    outcome = branch_on_outcome()
    start_run >> wait_for_run >> route(run_json) >> [tool_outputs, no_tool_calls]
    tool_outputs >> submit >> wait_after_tools >> list_steps
    no_tool_calls >> list_steps
    get_step >> outcome >> [report_answer(step_results), report_failure()]


portkey_agent_workflow()
