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

    It polls on poke mode's schedule (:func:`~airflow_provider_portkey.polling.poll_interval`,
    with the same exponential backoff), never sooner than a ``Retry-After`` the server sent. It
    owns no connection: requests go through the event loop's shared client, so a cancelled
    trigger leaves nothing open.

    :param deadline: Epoch seconds after which the wait ends with a ``timeout`` event.
    :param fail_on_statuses: Terminal statuses reported as ``failure`` rather than ``success``.
    :param last_status: The status the sensor saw before deferring, for the timeout message.
    :param polls_done: Checks the sensor already made before deferring. The trigger then waits
        the interval poke mode would wait before its own first poll (instead of asking again at
        once) and continues the backoff from there.
    :param min_first_wait: A ``Retry-After`` the sensor's last check got: the floor of that wait.
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
        polls_done: int = 0,
        min_first_wait: float = 0.0,
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
        self.polls_done = int(polls_done)
        self.min_first_wait = float(min_first_wait)

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
                "polls_done": self.polls_done,
                "min_first_wait": self.min_first_wait,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self._wait()
        yield TriggerEvent(event)

    async def _wait(self) -> dict[str, Any]:
        """Poll until there is an outcome; return the one event payload."""
        hook = PortkeyAsyncHook(self.portkey_conn_id, trace_id=self.trace_id)
        last_status = self.last_status
        poll = self.polls_done
        if poll:
            # Past the deadline (a triggerer that was down) this does not wait: one last poll
            # still lets a step that finished meanwhile win over the timeout.
            await self._sleep(poll, self.min_first_wait)
        while True:
            poll += 1
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
            if not await self._sleep(poll, retry_after):
                return self._timeout_event(last_status)

    async def _sleep(self, poll: int, retry_after: float) -> bool:
        """Wait before poll number ``poll + 1``; ``False`` (without waiting) once the deadline has passed."""
        remaining = self.deadline - time.time()
        if remaining <= 0:
            return False
        interval = poll_interval(
            self.poll_interval,
            poll,
            exponential_backoff=self.exponential_backoff,
            jitter_key=f"{self.thread_id}#{self.run_id}#{self.step_id}",
            max_wait=self.max_wait,
        )
        # Sleep at most until the deadline, then poll once more: a step that finished meanwhile wins.
        await asyncio.sleep(min(max(interval, retry_after), remaining))
        return True

    def _timeout_event(self, last_status: str | None) -> dict[str, Any]:
        return {
            "status": EVENT_TIMEOUT,
            "message": f"run step {self.step_id} of run {self.run_id} (thread {self.thread_id}) "
            f"reached no terminal status before the deadline; last status seen: {last_status}",
            "last_status": last_status,
        }
