"""The trigger that waits on a run step on the triggerer's event loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Unpack

from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.models import RunStep
from airflow_provider_portkey.statuses import (
    EVENT_ERROR,
    EVENT_FAILURE,
    EVENT_STATUSES,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
)
from airflow_provider_portkey.triggers.base import Polled, PollOptions, PortkeyPollTrigger

__all__ = [
    "EVENT_ERROR",
    "EVENT_FAILURE",
    "EVENT_STATUSES",
    "EVENT_SUCCESS",
    "EVENT_TIMEOUT",
    "RunStepTrigger",
]


class RunStepTrigger(PortkeyPollTrigger):
    """
    Poll a run step until it is terminal, the deadline passes, or a permanent error occurs.

    The loop, the event shapes and the kwargs' rules are :class:`PortkeyPollTrigger`'s; success
    and failure events carry the step JSON under ``step``.

    :param include: ``include[]`` values for the request.
    """

    noun = "step"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        step_id: str,
        include: Sequence[str] | str = (),
        **options: Unpack[PollOptions],
    ) -> None:
        super().__init__(**options)
        self.thread_id = thread_id
        self.run_id = run_id
        self.step_id = step_id
        # One string is one value (a template renders to one; never hand its characters on).
        self.include = [include] if isinstance(include, str) else list(include)

    def target_kwargs(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "step_id": self.step_id,
            "include": list(self.include),
        }

    def target_path(self) -> tuple[str, ...]:
        return (self.thread_id, self.run_id, self.step_id)

    def subject(self) -> str:
        return f"run step {self.step_id} of run {self.run_id} (thread {self.thread_id})"

    async def fetch(self, hook: PortkeyAsyncHook) -> RunStep:
        return await hook.get_run_step(self.thread_id, self.run_id, self.step_id, self.include)

    def is_done(self, polled: Polled) -> bool:
        return isinstance(polled, RunStep) and polled.is_terminal
