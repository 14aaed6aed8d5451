"""Two background responses in a row: the second continues the first with ``previous_response_id``.

1. ``draft`` (:class:`CreateResponseOperator`, ``wait_for_completion=True``) starts a background
   response and waits for it deferred, on the triggerer; a response that does not complete fails
   the task (the default ``fail_on_statuses``).
2. ``refine`` starts a second response with ``previous_response_id`` set to the first one's id, so
   the model sees the whole conversation without it being sent again, and waits the same way.
3. ``total_tokens`` sums the token usage both tasks pushed (XCom key ``usage``): the workflow's cost.

Killing either task, or its ``timeout``, cancels the response it started.

The defaults work against the emulator bundled with this provider
(``python -m airflow_provider_portkey.emulator``). Connection: ``portkey_default``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_portkey.operators.response import CreateResponseOperator

log = logging.getLogger(__name__)


def ask(task_id: str, body: dict[str, Any]) -> CreateResponseOperator:
    """A background response, waited on deferred (short polls for the demo)."""
    return CreateResponseOperator(
        task_id=task_id,
        portkey_conn_id="portkey_default",
        body={"model": "{{ params.model }}", **body},
        wait_for_completion=True,
        deferrable=True,
        poke_interval=2,
        timeout=timedelta(minutes=30),
    )


@dag(
    dag_id="portkey_response_chain",
    description="Two background responses, the second continuing the first (previous_response_id)",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["portkey", "example", "responses"],
    params={
        "model": Param("emulator-completes", type="string", description="Model to ask"),
        "topic": Param("the water cycle", type="string", description="What to write about"),
    },
    doc_md=__doc__,
)
def portkey_response_chain() -> None:
    draft = ask("draft", {"input": "Write a paragraph about {{ params.topic }}."})
    refine = ask(
        "refine",
        {
            "input": "Now make it one sentence for a ten-year-old.",
            "previous_response_id": "{{ ti.xcom_pull(task_ids='draft', key='response_id') }}",
        },
    )

    @task
    def total_tokens(ti: Any = None) -> int:
        usages = ti.xcom_pull(task_ids=["draft", "refine"], key="usage")
        total = sum(int(usage["total_tokens"]) for usage in usages if usage)
        log.info(
            "The chain used %d tokens; the final text: %s", total, ti.xcom_pull("refine", key="output_text")
        )
        return total

    draft >> refine >> total_tokens()


portkey_response_chain()
