"""Fetch a run step once and hand it to later tasks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator, Context

from airflow_provider_portkey.connection_fields import DEFAULT_CONN_NAME
from airflow_provider_portkey.statuses import STATUS_XCOM_KEY
from airflow_provider_portkey.tracing import PortkeyTaskMixin

__all__ = ["STATUS_XCOM_KEY", "GetRunStepOperator"]


class GetRunStepOperator(PortkeyTaskMixin, BaseOperator):
    """
    Retrieve one run step and return its JSON exactly as the API sent it (XCom ``return_value``).

    The step's ``status`` is also pushed under the XCom key ``status`` for simple branching. It
    does not wait and does not fail on a failed step: reporting the step is its whole job.
    Permanent errors (auth, not found, bad input) fail with the hook's message.

    :param thread_id: Thread id (templated).
    :param run_id: Run id (templated).
    :param step_id: Step id (templated).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param include: ``include[]`` values for the request (templated).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook: ``max_retries``, ``max_retry_wait``.
    """

    template_fields: Sequence[str] = (
        "thread_id",
        "run_id",
        "step_id",
        "include",
        "portkey_conn_id",
        "trace_id",
    )
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        step_id: str,
        portkey_conn_id: str = DEFAULT_CONN_NAME,
        include: Sequence[str] | None = None,
        trace_id: str | None = None,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_portkey_options(portkey_conn_id, trace_id, hook_params)
        self.thread_id = thread_id
        self.run_id = run_id
        self.step_id = step_id
        self.include = include

    def execute(self, context: Context) -> dict[str, Any]:
        with self.traced_hook(context) as hook:
            step = hook.get_run_step(self.thread_id, self.run_id, self.step_id, self.include)
        self.log.info("Fetched: %s", step.describe())
        context["ti"].xcom_push(key=STATUS_XCOM_KEY, value=str(step.status))
        return step.to_json()
