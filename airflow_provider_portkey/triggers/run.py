"""The trigger that waits on an agent run on the triggerer's event loop."""

from __future__ import annotations

from typing import Any, Unpack

from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.models import Run
from airflow_provider_portkey.statuses import RunStatus, run_is_done
from airflow_provider_portkey.triggers.base import Polled, PollOptions, PortkeyPollTrigger
from airflow_provider_portkey.triggers.cancellation import CancelOnKillMixin


class RunTrigger(CancelOnKillMixin, PortkeyPollTrigger):
    """
    Poll a run until it is terminal (or ``requires_action``, if asked), the deadline, or an error.

    The loop, the event shapes and the kwargs' rules are :class:`PortkeyPollTrigger`'s; success
    and failure events carry the run JSON under ``run``.

    :param stop_on_requires_action: Also end the wait when the run ``requires_action``.
    :param cancel_on_kill: Cancel the run when the task is stopped while deferred (see
        :mod:`~airflow_provider_portkey.triggers.cancellation`); set by ``CreateRunOperator``.
    """

    noun = "run"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        stop_on_requires_action: bool = True,
        cancel_on_kill: bool = False,
        **options: Unpack[PollOptions],
    ) -> None:
        super().__init__(**options)
        self.thread_id = thread_id
        self.run_id = run_id
        self.stop_on_requires_action = bool(stop_on_requires_action)
        self.cancel_on_kill = bool(cancel_on_kill)

    def target_kwargs(self) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "run_id": self.run_id,
            "stop_on_requires_action": self.stop_on_requires_action,
            "cancel_on_kill": self.cancel_on_kill,
        }

    def target_path(self) -> tuple[str, ...]:
        return (self.thread_id, self.run_id)

    def subject(self) -> str:
        return f"run {self.run_id} (thread {self.thread_id})"

    async def fetch(self, hook: PortkeyAsyncHook) -> Run:
        return await hook.get_run(self.thread_id, self.run_id)

    def is_done(self, polled: Polled) -> bool:
        return isinstance(polled, Run) and run_is_done(polled, self.stop_on_requires_action)

    async def cancel_remote(self, hook: PortkeyAsyncHook) -> str:
        run = await hook.get_run(self.thread_id, self.run_id)
        if run.is_terminal or run.status is RunStatus.CANCELLING:
            return f"not cancelling {run.describe()}"
        return f"cancelling {(await hook.cancel_run(self.thread_id, self.run_id)).describe()}"
