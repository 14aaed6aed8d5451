"""The trigger that waits on a background response on the triggerer's event loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.models_response import Response
from airflow_provider_portkey.triggers.base import Polled, PollOptions, PortkeyPollTrigger
from airflow_provider_portkey.triggers.cancellation import CancelOnKillMixin


class ResponseTrigger(CancelOnKillMixin, PortkeyPollTrigger):
    """
    Poll a response until it is terminal, the deadline passes, or a permanent error occurs.

    The loop, the event shapes and the kwargs' rules are :class:`PortkeyPollTrigger`'s; success
    and failure events carry the response JSON under ``response``.

    :param response_id: The response id, ``resp_...``.
    :param include: ``include[]`` values for the request.
    :param cancel_on_kill: Cancel the response when the task is stopped while deferred (see
        :mod:`~airflow_provider_portkey.triggers.cancellation`); set by ``CreateResponseOperator``.
    """

    noun = "response"

    def __init__(
        self,
        *,
        response_id: str,
        include: Sequence[str] | str = (),
        cancel_on_kill: bool = False,
        **options: Unpack[PollOptions],
    ) -> None:
        super().__init__(**options)
        self.response_id = response_id
        # One string is one value (a template renders to one; never hand its characters on).
        self.include = [include] if isinstance(include, str) else list(include)
        self.cancel_on_kill = bool(cancel_on_kill)

    def target_kwargs(self) -> dict[str, Any]:
        return {
            "response_id": self.response_id,
            "include": list(self.include),
            "cancel_on_kill": self.cancel_on_kill,
        }

    def target_path(self) -> tuple[str, ...]:
        return (self.response_id,)

    def subject(self) -> str:
        return f"response {self.response_id}"

    async def fetch(self, hook: PortkeyAsyncHook) -> Response:
        return await hook.get_response(self.response_id, self.include)

    def is_done(self, polled: Polled) -> bool:
        return isinstance(polled, Response) and polled.is_terminal

    def xcoms(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Also ``status``, ``output_text`` and ``usage``, as ``ResponseSensor`` pushes them."""
        response = Response.from_api(payload)
        if response.usage is not None:
            self.log.info("Token usage of response %s: %s", response.id, response.usage.describe())
        return {**super().xcoms(payload), **response.xcoms()}

    async def cancel_remote(self, hook: PortkeyAsyncHook) -> str:
        response = await hook.get_response(self.response_id)
        if response.is_terminal:
            return f"not cancelling {response.describe()}"
        return f"cancelling {(await hook.cancel_response(self.response_id)).describe()}"
