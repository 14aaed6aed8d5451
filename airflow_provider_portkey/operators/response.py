"""Start a response (the Responses API), optionally waiting for it, and look at one without waiting.

:class:`CreateResponseOperator` waits the way
:class:`~airflow_provider_portkey.sensors.response.ResponseSensor` does because it is one: creating is
what it does before the first look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.providers.common.compat.sdk import BaseOperator, Context

from airflow_provider_portkey.connection_fields import DEFAULT_CONN_NAME
from airflow_provider_portkey.errors import PortkeyConfigurationError, PortkeyError
from airflow_provider_portkey.sensors.response import ResponseSensor, push_response_xcoms
from airflow_provider_portkey.tracing import PortkeyTaskMixin

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import AirflowException
    from airflow.triggers.base import BaseTrigger

#: XCom key of the started response's id, for templating downstream.
RESPONSE_ID_XCOM_KEY = "response_id"


class CreateResponseOperator(ResponseSensor):
    """
    Start a response (``POST /responses``, in the background by default) and push its id.

    Returns the response JSON as the API sent it and pushes ``response_id`` for templates
    (``"{{ ti.xcom_pull('ask', key='response_id') }}"``). With ``wait_for_completion=True`` it then
    waits exactly like ``ResponseSensor`` (deferred by Airflow's default, ``fail_on_statuses``,
    ``timeout``, ``poke_interval``...) and returns the final JSON, with ``status``, ``output_text``
    and ``usage`` pushed. Killing the task or its ``timeout`` cancels the response unless
    ``cancel_on_kill=False``. Reschedule mode is refused: each reschedule would start a new response.

    The create is retried only when the failure proves nothing was created (see docs/workflows.md);
    an Airflow retry of this task starts a second response: keep ``retries`` at 0 unless harmless.

    :param body: The API's fields by their API names: ``model``, ``input``, ``instructions``,
        ``tools``, ``metadata``, ``previous_response_id``... (templated).
    :param background: Send ``background: true`` (the default): the API answers at once, ``queued``.
    :param wait_for_completion: Wait until the response ends.
    :param cancel_on_kill: Cancel the response when the task is killed or times out.

    The other arguments (``include``, ``portkey_conn_id``, ``fail_on_statuses``, ``deferrable``,
    ``trace_id``, ``hook_params``, ``timeout``...) are ``ResponseSensor``'s.
    """

    template_fields: Sequence[str] = ("body", "include", "portkey_conn_id", "trace_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"body": "json"}

    def __init__(
        self,
        *,
        body: Mapping[str, Any],
        background: bool = True,
        wait_for_completion: bool = False,
        cancel_on_kill: bool = True,
        include: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.wait_for_completion = wait_for_completion
        super().__init__(response_id="", include=include, **kwargs)
        if wait_for_completion and self.reschedule:
            raise PortkeyConfigurationError(
                f"{self.task_id}: mode='reschedule' would start a new response at every reschedule; "
                "wait with deferrable=True or in poke mode"
            )
        self.body = body
        self.background = background
        self.cancel_on_kill = cancel_on_kill

    @property
    def waits(self) -> bool:
        return self.wait_for_completion

    def _execute(self, context: Context) -> Any:
        assert self._active_hook is not None  # set by execute()
        response = self._active_hook.create_response(self.body, background=self.background)
        self.response_id = response.id
        self._looked_before = True  # the create reached the server: a later outage is waited out
        context["ti"].xcom_push(key=RESPONSE_ID_XCOM_KEY, value=response.id)
        self.log.info("Started %s", response.describe())
        if response.is_terminal:  # answered in full (background=False, or a fast upstream)
            return self._finish(response, context)
        if not self.wait_for_completion:
            push_response_xcoms(context, response, self.log)
            return response.to_json()
        return super()._execute(context)

    def defer(
        self,
        *,
        trigger: BaseTrigger,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: timedelta | int | float | None = None,
    ) -> NoReturn:
        """Defer, handing the response id to the resumed task (a new instance) for a cancel."""
        kwargs = {**(kwargs or {}), "response_id": self.response_id}
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def execute_complete(
        self, context: Context, event: Mapping[str, Any] | None = None, response_id: str = ""
    ) -> Any:
        self.response_id = response_id
        return super().execute_complete(context, event)

    def timed_out(self) -> AirflowException:
        self._cancel("the wait timed out")
        return super().timed_out()

    def on_kill(self) -> None:
        self._cancel("the task was killed")

    def _cancel(self, why: str) -> None:
        """Cancel the started response unless told not to or it already ended; never raises."""
        if not self.cancel_on_kill or not self.response_id:
            return
        try:
            with self.portkey_hook() as hook:
                response = hook.get_response(self.response_id)
                if response.is_terminal:
                    self.log.info("Not cancelling (%s): %s", why, response.describe())
                    return
                self.log.info("Cancelling (%s): %s", why, hook.cancel_response(self.response_id).describe())
        except PortkeyError as error:
            self.log.warning("Could not cancel response %s (%s): %s", self.response_id, why, error)


class GetResponseOperator(PortkeyTaskMixin, BaseOperator):
    """
    Retrieve a response once: its JSON as sent (XCom ``return_value``), and ``status``,
    ``output_text`` and ``usage`` under their own keys. It never fails because the response failed.

    :param response_id: The response id (templated).
    :param include: ``include[]`` values for the request (templated).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook: ``max_retries``, ``max_retry_wait``.
    """

    template_fields: Sequence[str] = ("response_id", "include", "portkey_conn_id", "trace_id")
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        response_id: str,
        include: Sequence[str] | None = None,
        portkey_conn_id: str = DEFAULT_CONN_NAME,
        trace_id: str | None = None,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_portkey_options(portkey_conn_id, trace_id, hook_params)
        self.response_id = response_id
        self.include = include

    def execute(self, context: Context) -> dict[str, Any]:
        with self.traced_hook(context) as hook:
            response = hook.get_response(self.response_id, self.include)
        self.log.info("Fetched: %s", response.describe())
        push_response_xcoms(context, response, self.log)
        return response.to_json()
