"""The trigger that waits on an agent run on the triggerer's event loop."""

from __future__ import annotations

from typing import Any, Unpack

from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.models import Run
from airflow_provider_portkey.statuses import run_is_done
from airflow_provider_portkey.triggers.base import Polled, PollOptions, PortkeyPollTrigger


class RunTrigger(PortkeyPollTrigger):
    """
    Poll a run until it is terminal (or ``requires_action``, if asked), the deadline, or an error.

    The loop, the event shapes and the kwargs' rules are :class:`PortkeyPollTrigger`'s; success
    and failure events carry the run JSON under ``run``.

    :param stop_on_requires_action: Also end the wait when the run ``requires_action``.
    """

    noun = "run"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        stop_on_requires_action: bool = True,
        **options: Unpack[PollOptions],
    ) -> None:
        super().__init__(**options)
        self.thread_id = thread_id
        self.run_id = run_id
        self.stop_on_requires_action = bool(stop_on_requires_action)

    def target_kwargs(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "stop_on_requires_action": self.stop_on_requires_action,
        }

    def target_path(self) -> tuple[str, ...]:
        return (self.thread_id, self.run_id)

    def subject(self) -> str:
        return f"run {self.run_id} (thread {self.thread_id})"

    async def fetch(self, hook: PortkeyAsyncHook) -> Run:
        return await hook.get_run(self.thread_id, self.run_id)

    def is_done(self, polled: Polled) -> bool:
        return isinstance(polled, Run) and run_is_done(polled, self.stop_on_requires_action)
