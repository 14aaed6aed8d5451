"""Start a background response, wait for it on the triggerer, branch on how it ended, use its text.

1. ``ask`` (:class:`CreateResponseOperator`) sends ``POST /responses`` with ``background: true``
   through Portkey; the API answers at once (``queued``) and the task pushes ``response_id``.
2. ``wait_for_response`` (:class:`ResponseSensor`, deferrable) waits on the triggerer, holding no
   worker slot, until the response is ``completed``, ``failed``, ``cancelled`` or ``incomplete``
   (``fail_on_statuses=()``: the branch decides what an unsuccessful ending means). It pushes the
   response JSON, and its ``status``, ``output_text`` and token ``usage`` under their own keys.
3. ``branch_on_status`` routes a completed response to ``use_answer`` (which reads
   ``output_text``) and any other ending to ``report_failure`` (with the error or the reason).

Every request carries a Portkey trace id derived from its task try, and every Portkey task has a
"Portkey logs" button in Airflow opening that trace.

The defaults work against the emulator bundled with this provider
(``python -m airflow_provider_portkey.emulator``): model ``emulator-completes`` answers,
``emulator-fails`` fails, ``emulator-incomplete`` runs out of output tokens.

Connection: ``portkey_default``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_portkey.operators.response import CreateResponseOperator
from airflow_provider_portkey.sensors.response import ResponseSensor

log = logging.getLogger(__name__)


@dag(
    dag_id="portkey_background_response",
    description="Start a background response, wait deferred, branch on its status, use its text",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "example", "responses"],
    params={
        "model": Param("emulator-completes", type="string", description="Model to ask"),
        "question": Param("Why is the sky blue?", type="string", description="The user's input"),
    },
    doc_md=__doc__,
)
def portkey_background_response() -> None:
    ask = CreateResponseOperator(
        task_id="ask",
        portkey_conn_id="portkey_default",
        body={
            "model": "{{ params.model }}",
            "input": "{{ params.question }}",
            "instructions": "Answer in two sentences.",
            "metadata": {"source": "airflow"},
        },
    )
    wait_for_response = ResponseSensor(
        task_id="wait_for_response",
        portkey_conn_id="portkey_default",
        response_id="{{ ti.xcom_pull(task_ids='ask', key='response_id') }}",
        fail_on_statuses=(),
        deferrable=True,
        # Short for the demo, well inside the ~10 minutes results are kept. Not below a few seconds:
        # Airflow (3.0 to 3.3 at least) can fail a deferred task whose trigger fires before the
        # scheduler has seen the worker exit when it deferred (apache/airflow#67287).
        poke_interval=5,
        timeout=timedelta(minutes=30),
    )

    @task.branch
    def branch_on_status(ti: Any = None) -> str:
        status = ti.xcom_pull(task_ids="wait_for_response", key="status")
        return "use_answer" if status == "completed" else "report_failure"

    @task
    def use_answer(ti: Any = None) -> dict[str, Any]:
        text = ti.xcom_pull(task_ids="wait_for_response", key="output_text")
        usage = ti.xcom_pull(task_ids="wait_for_response", key="usage") or {}
        log.info("The answer (%s tokens): %s", usage.get("total_tokens"), text)
        return {"answer": text, "total_tokens": usage.get("total_tokens")}

    @task
    def report_failure(response: dict[str, Any]) -> dict[str, Any]:
        why = response.get("error") or response.get("incomplete_details")
        log.warning("Response %s ended %s: %s", response["id"], response["status"], why)
        return {"response_id": response["id"], "status": response["status"], "why": why}

    response_json: Any = wait_for_response.output  # the response's JSON at run time
    ask >> wait_for_response >> branch_on_status() >> [use_answer(), report_failure(response_json)]


portkey_background_response()
