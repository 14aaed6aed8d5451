"""The trigger that waits on an agent run on the triggerer's event loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.models import Run
from airflow_provider_portkey.statuses import run_is_done
from airflow_provider_portkey.triggers.base import Polled, PortkeyPollTrigger


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
        portkey_conn_id: str,
        thread_id: str,
        run_id: str,
        deadline: float,
        poll_interval: float,
        stop_on_requires_action: bool = True,
        exponential_backoff: bool = False,
        max_wait: float | None = None,
        fail_on_statuses: Sequence[str] = (),
        last_status: str | None = None,
        trace_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        polls_done: int = 0,
        min_first_wait: float = 0.0,
    ) -> None:
        super().__init__(
            portkey_conn_id=portkey_conn_id,
            deadline=deadline,
            poll_interval=poll_interval,
            exponential_backoff=exponential_backoff,
            max_wait=max_wait,
            fail_on_statuses=fail_on_statuses,
            last_status=last_status,
            trace_id=trace_id,
            metadata=metadata,
            polls_done=polls_done,
            min_first_wait=min_first_wait,
        )
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
