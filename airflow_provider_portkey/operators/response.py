"""Start a response (the Responses API), optionally waiting for it, and look at one without waiting.

:class:`CreateResponseOperator` waits the way
:class:`~airflow_provider_portkey.sensors.response.ResponseSensor` does because it is one: creating is
what it does before the first look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, Context

from airflow_provider_portkey.connection_fields import DEFAULT_CONN_NAME
from airflow_provider_portkey.durable import CreateAndWaitMixin
from airflow_provider_portkey.sensors.response import ResponseSensor, push_response_xcoms
from airflow_provider_portkey.tracing import PortkeyTaskMixin

if TYPE_CHECKING:
    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.models_response import Response

#: XCom key of the started response's id, for templating downstream.
RESPONSE_ID_XCOM_KEY = "response_id"


class CreateResponseOperator(CreateAndWaitMixin, ResponseSensor):
    """
    Start a response (``POST /responses``, in the background by default) and push its id.

    Returns the response JSON as the API sent it and pushes ``response_id`` for templates
    (``"{{ ti.xcom_pull('ask', key='response_id') }}"``). With ``wait_for_completion=True`` it then
    waits exactly like ``ResponseSensor`` (deferred by Airflow's default, ``fail_on_statuses``,
    ``timeout``, ``poke_interval``...) and returns the final JSON, with ``status``, ``output_text``
    and ``usage`` pushed. While it waits, its ``timeout`` or a kill (also while deferred) cancels the
    response unless ``cancel_on_kill=False``. Reschedule mode is refused: each reschedule would start
    a new response. On Airflow 3.3+ a retry waits on the response an earlier try started instead of
    starting another (see :mod:`airflow_provider_portkey.durable` and docs/workflows.md).

    The create is retried only when the failure proves nothing was created (see docs/workflows.md).

    :param body: The API's fields by their API names: ``model``, ``input``, ``instructions``,
        ``tools``, ``metadata``, ``previous_response_id``... (templated).
    :param background: Send ``background: true`` (the default): the API answers at once, ``queued``.
    :param wait_for_completion: Wait until the response ends.
    :param cancel_on_kill: Cancel the response when the task is killed or times out.
    :param rerun_finished: On a retry, start a new response even if an earlier try's one ended.

    The other arguments (``include``, ``portkey_conn_id``, ``fail_on_statuses``, ``deferrable``,
    ``trace_id``, ``hook_params``, ``timeout``...) are ``ResponseSensor``'s.
    """

    template_fields: Sequence[str] = ("body", "include", "portkey_conn_id", "trace_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"body": "json"}
    state_key = "portkey_response"

    def __init__(
        self,
        *,
        body: Mapping[str, Any],
        background: bool = True,
        wait_for_completion: bool = False,
        cancel_on_kill: bool = True,
        rerun_finished: bool = False,
        include: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.wait_for_completion = wait_for_completion  # ResponseSensor's __init__ asks `waits`
        super().__init__(response_id="", include=include, **kwargs)
        self.set_create_options(
            wait_for_completion=wait_for_completion,
            cancel_on_kill=cancel_on_kill,
            rerun_finished=rerun_finished,
        )
        self.body = body
        self.background = background

    def start(self, hook: PortkeyHook) -> Response:
        response = hook.create_response(self.body, background=self.background)
        self.response_id = response.id
        return response

    def started_ids(self) -> dict[str, str]:
        return {RESPONSE_ID_XCOM_KEY: self.response_id} if self.response_id else {}

    def adopt(self, ids: Mapping[str, str]) -> None:
        self.response_id = ids[RESPONSE_ID_XCOM_KEY]

    def cancel_remote(self, hook: PortkeyHook) -> str:
        response = hook.get_response(self.response_id)
        if response.is_terminal:
            return f"not cancelling {response.describe()}"
        return f"cancelling {hook.cancel_response(self.response_id).describe()}"


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
