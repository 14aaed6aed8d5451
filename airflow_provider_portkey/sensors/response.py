"""Wait for a background response (the Responses API) to end, in poke, reschedule or deferrable mode."""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, Unpack

from airflow.providers.common.compat.sdk import AirflowException, Context

from airflow_provider_portkey.errors import ResponseUnsuccessfulError
from airflow_provider_portkey.sensors.base import PortkeyPollSensor, checked_fail_on_statuses
from airflow_provider_portkey.statuses import (
    OUTPUT_TEXT_XCOM_KEY,
    STATUS_XCOM_KEY,
    UNSUCCESSFUL_RESPONSE_STATUSES,
)
from airflow_provider_portkey.usage import USAGE_XCOM_KEY

# Kept out of DAG parsing (see sensors/base.py): the methods that run the wait import what they use.
if TYPE_CHECKING:
    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.models_response import Response
    from airflow_provider_portkey.triggers.base import Polled, PollOptions
    from airflow_provider_portkey.triggers.response import ResponseTrigger

__all__ = [
    "BACKGROUND_RETENTION",
    "DEFAULT_RESPONSE_FAIL_ON_STATUSES",
    "OUTPUT_TEXT_XCOM_KEY",
    "STATUS_XCOM_KEY",
    "USAGE_XCOM_KEY",
    "ResponseRetentionWarning",
    "ResponseSensor",
    "push_response_xcoms",
    "warn_if_polls_outlive_retention",
]

DEFAULT_RESPONSE_FAIL_ON_STATUSES: tuple[str, ...] = ("failed", "cancelled", "incomplete")
#: How long providers keep a background response for polling after it ends (OpenAI: about ten
#: minutes). A poll later than that may get 404 instead of the result.
BACKGROUND_RETENTION = timedelta(minutes=10)


class ResponseRetentionWarning(UserWarning):
    """The polling interval may outlive the provider's retention of a finished background response."""


def warn_if_polls_outlive_retention(
    task_id: str, poke_interval: float, *, exponential_backoff: bool, max_wait: timedelta | float | None
) -> None:
    """
    Warn (at DAG-parse time) when the gap between two polls can exceed :data:`BACKGROUND_RETENTION`.

    A response that ends just after a poll must still be there at the next one; otherwise the wait
    ends with "not found" instead of the result.
    """
    longest = poke_interval
    if exponential_backoff:
        cap = max_wait.total_seconds() if isinstance(max_wait, timedelta) else max_wait
        longest = cap if cap else float("inf")  # Airflow's backoff has no cap without max_wait
    limit = BACKGROUND_RETENTION.total_seconds()
    if longest > limit:
        shown = (
            "unbounded (exponential_backoff without max_wait)"
            if longest == float("inf")
            else f"{longest:g} s"
        )
        warnings.warn(
            f"{task_id}: the time between two polls can reach {shown}, longer than the ~{limit:g} s "
            "providers keep a finished background response; a result may be gone (404) before it is "
            "seen. Poll more often (poke_interval, max_wait).",
            ResponseRetentionWarning,
            stacklevel=3,
        )


class _Log(Protocol):
    def info(self, event: Any, *args: Any, **kw: Any) -> Any: ...


def push_response_xcoms(context: Context, response: Response, log: _Log) -> None:
    """
    Push ``status``, ``output_text`` and ``usage`` (:meth:`Response.xcoms`), and log the token usage.
    """
    for key, value in response.xcoms().items():
        context["ti"].xcom_push(key=key, value=value)
    if response.usage is not None:
        log.info("Token usage of response %s: %s", response.id, response.usage.describe())


class ResponseSensor(PortkeyPollSensor):
    """
    Wait until a response is ``completed``, ``failed``, ``cancelled`` or ``incomplete``.

    Returns the response JSON exactly as the API sent it (XCom ``return_value``) and pushes its
    ``status``, ``output_text`` (the text of its message items, joined) and ``usage`` under their
    own keys. A final status in ``fail_on_statuses`` (default ``failed``, ``cancelled``,
    ``incomplete``) fails the task without retries, with the error or the incomplete reason;
    ``fail_on_statuses=()`` to branch on ``status`` instead. Everything else (transient errors, the
    first look, unknown statuses, ``timeout``, ``soft_fail``, the three modes) is the shared
    mechanism's (:class:`~airflow_provider_portkey.sensors.base.PortkeyPollSensor`).

    Providers keep a finished background response for a limited time (OpenAI: about ten minutes):
    building the task warns when the time between two polls could be longer.

    :param response_id: The response id, ``resp_...`` (templated).
    :param include: ``include[]`` values for the request, e.g. ``reasoning.encrypted_content`` (templated).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param fail_on_statuses: Terminal statuses that fail the task.
    :param deferrable: Wait on the triggerer (default: Airflow's ``[operators] default_deferrable``).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook: ``max_retries``, ``max_retry_wait``.
    """

    template_fields: Sequence[str] = ("response_id", "include", "portkey_conn_id", "trace_id")
    noun = "response"

    def __init__(
        self,
        *,
        response_id: str,
        include: Sequence[str] | None = None,
        fail_on_statuses: Collection[str] = DEFAULT_RESPONSE_FAIL_ON_STATUSES,
        **kwargs: Any,
    ) -> None:
        allowed = [status.value for status in UNSUCCESSFUL_RESPONSE_STATUSES]
        super().__init__(fail_on_statuses=checked_fail_on_statuses(fail_on_statuses, allowed), **kwargs)
        self.response_id = response_id
        self.include = include
        if self.waits:
            warn_if_polls_outlive_retention(
                self.task_id,
                self.poke_interval,
                exponential_backoff=self.exponential_backoff,
                max_wait=self.max_wait,
            )

    @property
    def waits(self) -> bool:
        """Whether this task polls the response (a subclass may only start one)."""
        return True

    def fetch(self, hook: PortkeyHook) -> Response:
        return hook.get_response(self.response_id, self.include)

    def is_done(self, polled: Polled) -> bool:
        from airflow_provider_portkey.models_response import Response

        return isinstance(polled, Response) and polled.is_terminal

    def parse(self, payload: Any) -> Response:
        from airflow_provider_portkey.models_response import Response

        return Response.from_api(payload)

    def subject(self) -> str:
        return f"response {self.response_id}"

    def target_id(self) -> str:
        return self.response_id

    def unsuccessful(self, polled: Polled) -> AirflowException:
        return ResponseUnsuccessfulError(polled.describe())

    def publish(self, context: Context, polled: Polled) -> None:
        from airflow_provider_portkey.models_response import Response

        if isinstance(polled, Response):
            push_response_xcoms(context, polled, self.log)

    def make_trigger(self, **common: Unpack[PollOptions]) -> ResponseTrigger:
        from airflow_provider_portkey.triggers.response import ResponseTrigger

        # As given (the hook checks it): unrendered when the task starts on the triggerer.
        return ResponseTrigger(response_id=self.response_id, include=self.include or (), **common)
