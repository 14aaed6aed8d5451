"""A person approves an agent's tool calls before they run (Airflow 3.1+, human-in-the-loop).

1. ``start_run`` (:class:`CreateRunOperator`) starts a run on a new thread with the question.
2. ``wait_for_tool_calls`` (:class:`RunSensor`, deferrable) waits until the run ``requires_action``.
3. ``approve_tool_calls`` (:class:`ApproveToolCallsOperator`) shows the calls (function names,
   arguments as pretty JSON) on the task's "Required actions" page and waits for a person, without
   a worker slot. On "Approve" the tools run (``run_tools``, a plain function called only now) and
   their outputs are submitted; "Reject: tell the agent" answers every call with a refusal (the
   person's comment, if any); "Reject: cancel the run" cancels it. The decision is recorded in
   Portkey as feedback on the task's trace.
4. ``wait_for_answer`` (a second ``RunSensor``) waits until the run ends.

The defaults work against the emulator bundled with this provider
(``python -m airflow_provider_portkey.emulator``): assistant ``asst_tools`` asks for
``get_weather`` once. Answer in the UI (Browse -> Required actions), or through the REST API
(Airflow 3.1+): ``PATCH /api/v2/dags/<dag id>/dagRuns/
<run id>/taskInstances/approve_tool_calls/-1/hitlDetails`` with ``{"chosen_options": ["Approve"]}``.

Connection: ``portkey_default``. On Airflow 3.0 this file fails to parse, saying what is needed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from airflow.sdk import Context, Param, dag

from airflow_provider_portkey.operators.approval import ApproveToolCallsOperator
from airflow_provider_portkey.operators.run import CreateRunOperator
from airflow_provider_portkey.sensors.run import RunSensor

THREAD_ID = "{{ ti.xcom_pull(task_ids='start_run', key='thread_id') }}"
RUN_ID = "{{ ti.xcom_pull(task_ids='start_run', key='run_id') }}"


def get_weather(city: str) -> dict[str, Any]:
    """The function the assistant may call: a stub standing in for a real lookup."""
    return {"city": city, "temperature_c": 18, "conditions": "sunny"}


TOOLS = {"get_weather": get_weather}


def run_tools(tool_calls: list[dict[str, Any]], context: Context) -> dict[str, str]:
    """Run the approved calls: called only after a person chose "Approve"."""
    return {
        call["id"]: json.dumps(TOOLS[call["function"]["name"]](**json.loads(call["function"]["arguments"])))
        for call in tool_calls
    }


@dag(
    dag_id="portkey_approve_tool_calls",
    description="A person approves an agent's tool calls in Airflow before they run",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "example", "human-in-the-loop"],
    params={
        "assistant_id": Param("asst_tools", type="string", description="Assistant to run"),
        "question": Param("What is the weather in Paris?", type="string", description="The user's message"),
    },
    doc_md=__doc__,
)
def portkey_approve_tool_calls() -> None:
    start = CreateRunOperator(
        task_id="start_run",
        assistant_id="{{ params.assistant_id }}",
        thread={"messages": [{"role": "user", "content": "{{ params.question }}"}]},
    )
    # Not below a few seconds: Airflow (3.0 to 3.3 at least) can fail a deferred task whose trigger
    # fires before the scheduler has seen the worker exit when it deferred (apache/airflow#67287).
    wait = RunSensor(
        task_id="wait_for_tool_calls", thread_id=THREAD_ID, run_id=RUN_ID, deferrable=True, poke_interval=5
    )
    approve = ApproveToolCallsOperator(
        task_id="approve_tool_calls",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        tool_outputs_callable=run_tools,
        body="The agent was asked: {{ params.question }}",
        record_feedback=True,
    )
    finish = RunSensor(
        task_id="wait_for_answer",
        thread_id=THREAD_ID,
        run_id=RUN_ID,
        stop_on_requires_action=False,
        fail_on_statuses=("failed", "expired", "incomplete"),  # a cancel by the person is not a failure
        deferrable=True,
        poke_interval=5,
    )
    start >> wait >> approve >> finish


portkey_approve_tool_calls()
