"""The trigger that waits on a run step on the triggerer's event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow_provider_portkey._compat import BaseTrigger, TriggerEvent
from airflow_provider_portkey.errors import PortkeyTransientError
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.polling import poll_interval

#: The ``status`` of the one event a :class:`RunStepTrigger` yields.
EVENT_SUCCESS = "success"
EVENT_FAILURE = "failure"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_STATUSES = frozenset({EVENT_SUCCESS, EVENT_FAILURE, EVENT_TIMEOUT, EVENT_ERROR})


class RunStepTrigger(BaseTrigger):
    """
    Poll a run step until it is terminal, the deadline passes, or a permanent error occurs.

    Its kwargs are plain values only (never a secret or an object), and ``deadline`` is absolute
    (epoch seconds), so a triggerer restart resumes with the same deadline. It yields exactly one
    event: ``success`` or ``failure`` (with the step JSON), ``timeout`` (with the last status seen)
    or ``error`` (with the message).

    :param fail_on_statuses: Terminal statuses reported as ``failure`` rather than ``success``.
    :param last_status: The status the sensor saw before deferring, for the timeout message.
    """

    def __init__(
        self,
        *,
        portkey_conn_id: str,
        thread_id: str,
        run_id: str,
        step_id: str,
        deadline: float,
        poll_interval: float,
        exponential_backoff: bool = False,
        max_wait: float | None = None,
        include: Sequence[str] = (),
        fail_on_statuses: Sequence[str] = (),
        last_status: str | None = None,
        trace_id: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is unannotated
        self.portkey_conn_id = portkey_conn_id
        self.thread_id = thread_id
        self.run_id = run_id
        self.step_id = step_id
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)
        self.exponential_backoff = exponential_backoff
        self.max_wait = max_wait
        self.include = list(include)
        self.fail_on_statuses = list(fail_on_statuses)
        self.last_status = last_status
        self.trace_id = trace_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "portkey_conn_id": self.portkey_conn_id,
                "thread_id": self.thread_id,
                "run_id": self.run_id,
                "step_id": self.step_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "exponential_backoff": self.exponential_backoff,
                "max_wait": self.max_wait,
                "include": list(self.include),
                "fail_on_statuses": list(self.fail_on_statuses),
                "last_status": self.last_status,
                "trace_id": self.trace_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self._wait()
        yield TriggerEvent(event)

    async def _wait(self) -> dict[str, Any]:
        """Poll until there is an outcome; return the one event payload."""
        hook = PortkeyAsyncHook(self.portkey_conn_id, trace_id=self.trace_id)
        last_status = self.last_status
        jitter_key = f"{self.thread_id}#{self.run_id}#{self.step_id}"
        for poll in range(1, 1_000_000_000):
            retry_after = 0.0
            try:
                step = await hook.get_run_step(self.thread_id, self.run_id, self.step_id, self.include)
            except PortkeyTransientError as error:
                self.log.warning("Still waiting on step %s after a transient error: %s", self.step_id, error)
                retry_after = error.retry_after or 0.0
            except Exception as error:
                return {"status": EVENT_ERROR, "message": str(error)}
            else:
                last_status = step.status.value
                if step.is_terminal:
                    failed = last_status in self.fail_on_statuses
                    return {
                        "status": EVENT_FAILURE if failed else EVENT_SUCCESS,
                        "message": step.describe(),
                        "step": step.to_json(),
                    }
                self.log.info("Run step %s is %s", self.step_id, last_status)
            remaining = self.deadline - time.time()
            if remaining <= 0:
                return {
                    "status": EVENT_TIMEOUT,
                    "message": f"run step {self.step_id} of run {self.run_id} (thread {self.thread_id}) "
                    f"reached no terminal status before the deadline; last status seen: {last_status}",
                    "last_status": last_status,
                }
            interval = poll_interval(
                self.poll_interval,
                poll,
                exponential_backoff=self.exponential_backoff,
                jitter_key=jitter_key,
                max_wait=self.max_wait,
            )
            await asyncio.sleep(min(max(interval, retry_after), remaining))
        raise AssertionError("unreachable")  # pragma: no cover
