"""Wait on an agent's run step, then branch on how it ended.

``wait_for_step`` (a :class:`RunStepSensor` with ``fail_on_statuses=()``) waits until the step is
terminal and returns the step JSON exactly as the API sent it, whatever the outcome. ``branch_on_status``
then picks ``report_output`` for a ``completed`` step (the message it created, or its tool calls'
outputs) or ``report_failure`` for a ``failed``, ``cancelled`` or ``expired`` one (its ``last_error``).
Both report tasks return a small dict, so the outcome is in XCom for whatever comes next.

The ids come from the DAG's params; the defaults are steps that the emulator bundled with this
provider knows (``python -m airflow_provider_portkey.emulator``): ``step_completes`` finishes after a
few polls, ``step_fails`` ends ``failed``, ``step_tool_calls`` runs a function tool.
Trigger with another step: ``airflow dags test portkey_wait_and_branch -c '{"step_id": "step_fails"}'``.

Poke or deferrable: the sensor follows Airflow's own switch, ``[operators] default_deferrable``
(``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True``), read when the parsing process first loads the
sensor (the default of its ``deferrable`` argument, as in Airflow's own providers). Deferrable mode
frees the worker slot while a triggerer polls; ``airflow dags test`` runs the trigger inline.

Connection: ``portkey_default`` (for the emulator: host ``http://127.0.0.1:PORT``, any API key as
password, and a ``virtual_key`` in the extra).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_portkey.sensors.run_step import RunStepSensor

log = logging.getLogger(__name__)

#: The task ``branch_on_status`` picks for each outcome.
SUCCESS_TASK = "report_output"
FAILURE_TASK = "report_failure"


def step_output(step: dict[str, Any]) -> dict[str, Any]:
    """What a completed step produced: the id of the message it created, or its tool calls' outputs."""
    details: dict[str, Any] = step.get("step_details") or {}
    if details.get("type") == "message_creation":
        return {"message_id": details["message_creation"]["message_id"]}
    outputs: list[dict[str, Any]] = []
    for call in details.get("tool_calls") or []:
        kind = call.get("type")
        if kind == "function":
            output = call["function"].get("output")
        elif kind == "code_interpreter":
            output = [item.get("logs") for item in call["code_interpreter"].get("outputs", [])]
        else:  # file_search and tool types this example does not know: keep the raw call
            output = call.get(kind)
        outputs.append({"id": call.get("id"), "type": kind, "output": output})
    return {"tool_outputs": outputs}


@dag(
    dag_id="portkey_wait_and_branch",
    description="Wait on a Portkey run step, then branch on its final status",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "example"],
    params={
        "thread_id": Param("thread_demo", type="string", description="Thread of the run"),
        "run_id": Param("run_demo", type="string", description="Run the step belongs to"),
        "step_id": Param("step_completes", type="string", description="Run step to wait on"),
    },
    doc_md=__doc__,
)
def portkey_wait_and_branch() -> None:
    wait_for_step = RunStepSensor(
        task_id="wait_for_step",
        portkey_conn_id="portkey_default",
        thread_id="{{ params.thread_id }}",
        run_id="{{ params.run_id }}",
        step_id="{{ params.step_id }}",
        fail_on_statuses=(),  # succeed on any terminal status: the branch below decides
        poke_interval=1,  # short for the demo; minutes suit real agents
        timeout=timedelta(minutes=10),
        # deferrable: not set, so Airflow's [operators] default_deferrable decides (see above).
    )

    @task.branch
    def branch_on_status(step: dict[str, Any]) -> str:
        log.info("Step %s ended %s", step["id"], step["status"])
        return SUCCESS_TASK if step["status"] == "completed" else FAILURE_TASK

    @task(task_id=SUCCESS_TASK)
    def report_output(step: dict[str, Any]) -> dict[str, Any]:
        report = {"step_id": step["id"], "status": step["status"], **step_output(step)}
        log.info("Step output: %s", report)
        return report

    @task(task_id=FAILURE_TASK)
    def report_failure(step: dict[str, Any]) -> dict[str, Any]:
        error: dict[str, Any] = step.get("last_error") or {}
        report = {
            "step_id": step["id"],
            "status": step["status"],
            "code": error.get("code"),
            "message": error.get("message"),
        }
        log.warning("Step did not complete: %s", report)
        return report

    # An XComArg, resolved to the step JSON when each task runs (typed Any: mypy cannot model that).
    step: Any = wait_for_step.output
    branch_on_status(step) >> [report_output(step), report_failure(step)]


portkey_wait_and_branch()
