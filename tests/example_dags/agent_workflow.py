"""What the agent-workflow example DAG does on its tool-calling path, shared by its emulator and
gateway end-to-end tests."""

from __future__ import annotations

import json
from typing import Any

from tests.example_dags.airflow_cli import DagRunResult

DAG_ID = "portkey_agent_workflow"

#: Task states of a run whose assistant asks for one tool call, gets its output and completes.
TOOL_PATH_STATES = {
    "start_run": "success",
    "wait_for_run": "success",
    "route": "success",
    "compute_tool_outputs": "success",
    "submit_tool_outputs": "success",
    "wait_after_tools": "success",
    "no_tool_calls": "skipped",
    "list_steps": "success",
    "get_step[0]": "success",
    "get_step[1]": "success",
    "branch_on_outcome": "success",
    "report_answer": "success",
    "report_failure": "skipped",
}


def computed_tool_output(run: DagRunResult) -> tuple[dict[str, Any], str]:
    """The one tool call the run asked for and the output the DAG computed for it (checked)."""
    [call] = run.xcom("wait_for_run")["required_action"]["submit_tool_outputs"]["tool_calls"]
    output: str = run.xcom("compute_tool_outputs")[call["id"]]
    assert json.loads(output) == {"city": "Paris", "temperature_c": 18, "conditions": "sunny"}
    return call, output
