"""Inspect a run step without waiting, and use it downstream through XCom.

``get_step`` (a :class:`GetRunStepOperator`) fetches the step once, whatever its status, and
returns its JSON exactly as the API sent it (XCom ``return_value``); it also pushes the bare
status under the XCom key ``status``. ``summarize_step`` receives both through XCom and returns a
short summary: status, type, the created message or the tool calls, token usage and ``last_error``.
Nothing here fails on a failed step: reporting the step is the whole job.

The ids come from the DAG's params; the defaults are a step that the emulator bundled with this
provider knows (``python -m airflow_provider_portkey.emulator``): ``step_instant`` is already
completed. Try ``-c '{"step_id": "step_tool_calls"}'`` (a function tool call, still in progress on
the first look) or ``step_fails``.

Connection: ``portkey_default``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow.sdk import Param, XComArg, dag, task

from airflow_provider_portkey.operators.run_step import STATUS_XCOM_KEY, GetRunStepOperator

log = logging.getLogger(__name__)


@dag(
    dag_id="portkey_inspect_step",
    description="Fetch a Portkey run step once and summarize it downstream",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "example"],
    params={
        "thread_id": Param("thread_demo", type="string", description="Thread of the run"),
        "run_id": Param("run_demo", type="string", description="Run the step belongs to"),
        "step_id": Param("step_instant", type="string", description="Run step to inspect"),
    },
    doc_md=__doc__,
)
def portkey_inspect_step() -> None:
    get_step = GetRunStepOperator(
        task_id="get_step",
        portkey_conn_id="portkey_default",
        thread_id="{{ params.thread_id }}",
        run_id="{{ params.run_id }}",
        step_id="{{ params.step_id }}",
    )

    @task(multiple_outputs=False)
    def summarize_step(step: dict[str, Any], status: str) -> dict[str, Any]:
        details: dict[str, Any] = step.get("step_details") or {}
        summary: dict[str, Any] = {
            "step_id": step["id"],
            "status": status,
            "type": step["type"],
            "usage": step.get("usage"),
            "last_error": step.get("last_error"),
        }
        if details.get("type") == "message_creation":
            summary["message_id"] = details["message_creation"]["message_id"]
        else:
            summary["tool_calls"] = [
                {"id": call.get("id"), "type": call.get("type")} for call in details.get("tool_calls") or []
            ]
        log.info("Step summary: %s", summary)
        return summary

    # XComArgs, resolved when the task runs (typed Any: mypy cannot model that).
    step: Any = get_step.output
    status: Any = XComArg(get_step, key=STATUS_XCOM_KEY)
    summarize_step(step, status)


portkey_inspect_step()
