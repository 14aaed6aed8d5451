"""The one polling loop every Portkey trigger runs; subclasses only say what to fetch and when it is done.

Shared with :class:`~airflow_provider_portkey.sensors.base.PortkeyPollSensor`'s rules: the same
schedule (:func:`~airflow_provider_portkey.polling.poll_interval`), a ``Retry-After`` floor,
transient errors waited out, permanent ones reported at once, an absolute deadline.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_portkey.connection_fields import DEFAULT_CONN_NAME
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.polling import DEFERRAL_GRACE, capped_wait, poll_interval
from airflow_provider_portkey.retries import keeps_waiting
from airflow_provider_portkey.statuses import (
    EVENT_ERROR,
    EVENT_FAILURE,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    ends_wait,
    is_known,
    skip_reason,
    timeout_message,
    unknown_status_warning,
    unreachable_message,
    wait_failed_message,
)


class TaskInstanceKeyFields(Protocol):
    """Where a trigger's XComs go: the fields of the task instance the triggerer gives it."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int


class Polled(Protocol):
    """What a trigger or sensor waits on (a run step, a run): a status, a summary, its JSON."""

    @property
    def status(self) -> Any: ...

    def describe(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class _RequiredPollOptions(TypedDict):
    deadline: float | None


class PollOptions(_RequiredPollOptions, total=False):
    """
    The kwargs every trigger takes besides what it polls (see :class:`PortkeyPollTrigger`).

    Subclasses take them as ``**options: Unpack[PollOptions]`` and list only their own target
    fields; the names are also the serialized kwargs' names.
    """

    portkey_conn_id: str
    poll_interval: float
    exponential_backoff: bool
    max_wait: float | None
    fail_on_statuses: Sequence[str]
    last_status: str | None
    trace_id: str | None
    metadata: Mapping[str, str] | None
    polls_done: int
    min_first_wait: float
    max_retries: int | None
    max_retry_wait: float | None
    timeout: float | None
    start_from_trigger: bool
    end_task: bool
    soft_fail: bool
    never_fail: bool
    retries: int | None


class PortkeyPollTrigger(BaseTrigger):
    """
    Poll an API object until it is done, the deadline passes, or a permanent error occurs.

    Its kwargs are plain values only (never a secret or an object), and ``deadline`` is absolute
    (epoch seconds), so a triggerer restart resumes with the same deadline. It yields exactly one
    event: ``success`` or ``failure`` (with the object's JSON under :attr:`noun`), ``timeout``
    (with the last status seen) or ``error`` (with the message).

    It polls on poke mode's schedule (with backoff, the jitter differs: see
    :func:`~airflow_provider_portkey.polling.poll_interval`), never sooner than a ``Retry-After``. It owns
    no connection: requests go through the event loop's shared client, so a cancelled trigger
    leaves nothing open. Requests carry the deferring task's trace id and metadata, so they land
    in the same Portkey trace as the task's own.

    The kwargs are a contract across releases: a trigger serialized by one release is run by the
    next after an upgrade. So every option has a default (only the ids and the deadline, in the
    kwargs of every release, are required), and a kwarg this release does not know (one a later
    release added, or an earlier one had) is logged and ignored rather than failing the wait.
    ``tests/data/trigger_kwargs`` holds kwargs frozen from earlier releases; the tests run them.

    :param portkey_conn_id: Airflow connection of type ``portkey``.
    :param deadline: Epoch seconds after which the wait ends with a ``timeout`` event.
    :param poll_interval: Seconds between polls (before backoff).
    :param exponential_backoff: Grow the interval as poke mode does.
    :param max_wait: Longest interval with backoff.
    :param fail_on_statuses: Final statuses reported as ``failure`` rather than ``success``.
    :param last_status: The status the sensor saw before deferring, for the timeout message.
    :param trace_id: ``x-portkey-trace-id`` of the task that deferred.
    :param metadata: ``x-portkey-metadata`` pairs of the task that deferred (its ids).
    :param polls_done: Checks the sensor already made before deferring. The trigger then waits
        the interval poke mode would wait before its own first poll (instead of asking again at
        once) and continues the backoff from there.
    :param min_first_wait: A ``Retry-After`` the sensor's last check got: the floor of that wait.
    :param max_retries: The task's ``hook_params`` ``max_retries`` (``None``: the connection's).
    :param max_retry_wait: The task's ``hook_params`` ``max_retry_wait`` (``None``: the connection's).
    :param timeout: The sensor's ``timeout`` in seconds (messages; the deadline when ``deadline`` is
        ``None``).
    :param start_from_trigger: The scheduler started the task here (Airflow >= 3.3, no worker
        looked before): ``deadline`` is ``None`` and comes from Airflow's trigger timeout (which
        survives a triggerer restart), the trace id from the task instance, and the first poll is
        the wait's first look.
    :param end_task: End the task from here (``TaskSuccessEvent`` after pushing the XComs a worker
        would push, ``TaskSkippedEvent``, ``TaskFailedEvent``) rather than resume it on a worker, when
        the outcome is the same (see :meth:`end_event`).
    :param soft_fail: The sensor's ``soft_fail`` (with ``end_task``).
    :param never_fail: The sensor's ``never_fail`` (with ``end_task``).
    :param retries: The task's ``retries`` (with ``end_task``): a failure that must not be retried
        ends here only when the task has none; otherwise a worker raises it.
    """

    #: How log lines name what is waited on ("step", "run"); also the key of its JSON in an event.
    noun: str

    def __init__(
        self,
        *,
        deadline: float | None,
        portkey_conn_id: str = DEFAULT_CONN_NAME,
        poll_interval: float = 60.0,
        exponential_backoff: bool = False,
        max_wait: float | None = None,
        fail_on_statuses: Sequence[str] = (),
        last_status: str | None = None,
        trace_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        polls_done: int = 0,
        min_first_wait: float = 0.0,
        max_retries: int | None = None,
        max_retry_wait: float | None = None,
        timeout: float | None = None,
        start_from_trigger: bool = False,
        end_task: bool = False,
        soft_fail: bool = False,
        never_fail: bool = False,
        retries: int | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is unannotated
        if unknown:
            self.log.warning(
                "%s ignores kwargs it does not know (from another release of the provider?): %s",
                type(self).__name__,
                ", ".join(sorted(unknown)),
            )
        self.portkey_conn_id = portkey_conn_id
        self.deadline = None if deadline is None else float(deadline)
        self.poll_interval = float(poll_interval)
        self.exponential_backoff = bool(exponential_backoff)
        self.max_wait = max_wait
        self.fail_on_statuses = list(fail_on_statuses)
        self.last_status = last_status
        self.trace_id = trace_id
        self.metadata = dict(metadata or {})
        self.polls_done = int(polls_done)
        self.min_first_wait = float(min_first_wait)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout
        self.start_from_trigger = bool(start_from_trigger)
        self.end_task = bool(end_task)
        self.soft_fail = bool(soft_fail)
        self.never_fail = bool(never_fail)
        self.retries = retries

    # -- what a subclass says -------------------------------------------------------------------------

    @abstractmethod
    def target_kwargs(self) -> dict[str, Any]:
        """The kwargs naming what is polled (ids, options): the rest of :meth:`serialize`."""

    @abstractmethod
    async def fetch(self, hook: PortkeyAsyncHook) -> Polled:
        """One look at the object."""

    @abstractmethod
    def is_done(self, polled: Polled) -> bool:
        """Whether the wait is over (the object reached a status the sensor stops at)."""

    @abstractmethod
    def target_path(self) -> tuple[str, ...]:
        """The ids from the thread down to the object (the backoff's jitter key)."""

    def target_id(self) -> str:
        """The id log lines name (the step id, the run id)."""
        return self.target_path()[-1]

    @abstractmethod
    def subject(self) -> str:
        """What is waited on, for the timeout message, e.g. ``run r (thread t)``."""

    # -- the shared loop --------------------------------------------------------------------------------

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "portkey_conn_id": self.portkey_conn_id,
                **self.target_kwargs(),
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "exponential_backoff": self.exponential_backoff,
                "max_wait": self.max_wait,
                "fail_on_statuses": list(self.fail_on_statuses),
                "last_status": self.last_status,
                "trace_id": self.trace_id,
                "metadata": dict(self.metadata),
                "polls_done": self.polls_done,
                "min_first_wait": self.min_first_wait,
                "max_retries": self.max_retries,
                "max_retry_wait": self.max_retry_wait,
                "timeout": self.timeout,
                "start_from_trigger": self.start_from_trigger,
                "end_task": self.end_task,
                "soft_fail": self.soft_fail,
                "never_fail": self.never_fail,
                "retries": self.retries,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.start_from_trigger:
            self._take_over_task()
        event = await self._wait()
        ti = self.task_instance
        # A triggerer sets the task instance; dag.test() runs the trigger inline without one and
        # resumes the task itself with whatever it yields, so there the task resumes as today.
        if not self.end_task or ti is None:
            yield TriggerEvent(event)
            return
        if event["status"] == EVENT_SUCCESS:
            await self.push_xcoms(ti, self.xcoms(event[self.noun]))
        yield self.end_event(event)

    def make_hook(self) -> PortkeyAsyncHook:
        """A hook for this wait: the task's connection, retries, trace and deadline."""
        return PortkeyAsyncHook(
            self.portkey_conn_id,
            max_retries=self.max_retries,
            max_retry_wait=self.max_retry_wait,
            trace_id=self.trace_id,
            metadata=self.metadata,
            deadline=self.deadline,
        )

    async def _wait(self) -> dict[str, Any]:
        """Poll until there is an outcome; return the one event payload."""
        if self.deadline is None:
            return {"status": EVENT_ERROR, "message": f"{type(self).__name__} has no deadline"}
        hook = self.make_hook()
        last_status, last_error = self.last_status, None
        poll = self.polls_done
        unknown_seen: set[str] = set()
        logged: str | None = None  # the status last logged at INFO
        if poll:
            # Past the deadline (a triggerer that was down) this does not wait: one last poll
            # still lets an object that finished meanwhile win over the timeout.
            await self._sleep(poll, self.min_first_wait)
        while True:
            poll += 1
            retry_after = 0.0
            try:
                polled = await self.fetch(hook)
            except Exception as error:
                # Not a first look, unless the task started here: else the sensor looked (and
                # reached the server) before deferring.
                first_look = self.start_from_trigger and poll == 1
                if not keeps_waiting(error, first_look=first_look):
                    if first_look and getattr(error, "transient", False):
                        return {"status": EVENT_ERROR, "message": self._unreachable(error)}
                    return {"status": EVENT_ERROR, "message": str(error)}
                self.log.warning(
                    "Still waiting on %s %s after a transient error: %s", self.noun, self.target_id(), error
                )
                retry_after = error.retry_after or 0.0
                last_error = str(error)
            else:
                last_status, last_error = str(polled.status), None
                if not is_known(polled.status) and last_status not in unknown_seen:
                    unknown_seen.add(last_status)
                    self.log.warning(unknown_status_warning(self.noun, self.target_id(), last_status))
                if ends_wait(self.is_done(polled), last_status, self.fail_on_statuses):
                    failed = last_status in self.fail_on_statuses
                    return {
                        "status": EVENT_FAILURE if failed else EVENT_SUCCESS,
                        "message": polled.describe(),
                        self.noun: polled.to_json(),
                    }
                # Not kept while sleeping: thousands of triggers wait at once; only the status is needed.
                del polled
                # INFO when the status changes, DEBUG for each poll that sees it again: a line per
                # poll is most of what a waiting trigger costs beyond its request (formatting, I/O).
                log = self.log.info if last_status != logged else self.log.debug
                log("%s %s is %s", self.noun.capitalize(), self.target_id(), last_status)
                logged = last_status
            if not await self._sleep(poll, retry_after):
                return self._timeout_event(last_status, last_error)

    async def _sleep(self, poll: int, retry_after: float) -> bool:
        """Wait before poll number ``poll + 1``; ``False`` (without waiting) once the deadline has passed."""
        remaining = (self.deadline or 0.0) - time.time()
        if remaining <= 0:
            return False
        interval = poll_interval(
            self.poll_interval,
            poll,
            exponential_backoff=self.exponential_backoff,
            jitter_key="#".join(self.target_path()),
            max_wait=self.max_wait,
        )
        # Sleep at most until the deadline, then poll once more: an object that finished meanwhile wins.
        await asyncio.sleep(capped_wait(interval, retry_after, remaining))
        return True

    def _timeout_event(self, last_status: str | None, last_error: str | None) -> dict[str, Any]:
        error = f"; last error: {last_error}" if last_error else ""
        return {
            "status": EVENT_TIMEOUT,
            "message": f"{self.subject()} reached no terminal status before the deadline; "
            f"last status seen: {last_status}{error}",
            "last_status": last_status,
            "last_error": last_error,
        }

    # -- starting and ending the task on the triggerer (Airflow >= 3.3) -----------------------------------

    def _take_over_task(self) -> None:
        """
        What a worker would have set before deferring: the deadline and this try's trace.

        The deadline is Airflow's trigger timeout (``timeout`` plus the grace the sensor asked
        for, stored with the task instance, so a triggerer restart keeps it) minus that grace.
        """
        from airflow_provider_portkey.tracing import TaskTrace

        if self.deadline is None:
            timeout_after: datetime | None = getattr(self, "timeout_after", None)
            if timeout_after is not None:
                self.deadline = timeout_after.timestamp() - DEFERRAL_GRACE.total_seconds()
            elif self.timeout is not None:
                self.deadline = time.time() + self.timeout
        if self.task_instance is not None and not self.metadata:
            trace = TaskTrace.from_context({"ti": self.task_instance}, self.trace_id)
            self.trace_id, self.metadata = trace.trace_id, trace.metadata

    def _unreachable(self, error: BaseException) -> str:
        return unreachable_message(self.subject(), self.portkey_conn_id, error)

    def xcoms(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The XComs a worker's ``execute_complete`` would push for a finished object's JSON."""
        return {"return_value": payload}

    async def push_xcoms(self, ti: TaskInstanceKeyFields, values: dict[str, Any]) -> None:
        """
        Push the XComs of a success through the task SDK, as a worker does (before the event).

        Not as ``TaskSuccessEvent(xcoms=...)``: Airflow 3.3.2 stores those JSON-encoded twice, so
        a downstream task pulls a string instead of the object (found in the deployment tier).
        """
        from airflow.sdk.execution_time.xcom import XCom
        from asgiref.sync import sync_to_async

        for key, value in values.items():
            await sync_to_async(XCom.set)(
                key, value, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index
            )

    def end_event(self, event: dict[str, Any]) -> TriggerEvent:
        """
        The event that ends the task here with the outcome a worker would give it, or ``event``
        itself (the task resumes on a worker) where that cannot be had without one.

        Success (after :meth:`push_xcoms`) succeeds; a skip under ``soft_fail``/``never_fail`` skips; a
        permanent error fails (Airflow retries it as it would a worker's error); a status in
        ``fail_on_statuses`` or a timeout fails without a retry, which a trigger can only promise
        for a task without retries: a task with retries resumes on a worker, which raises the
        no-retry error. The reason is logged in the task's trigger log, with the worker's words.
        """
        from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent

        status = event["status"]
        if status == EVENT_SUCCESS:
            self.log.info("Done: %s", event["message"])
            return TaskSuccessEvent()
        permanent_error = status == EVENT_ERROR
        if permanent_error:
            message = wait_failed_message(self.subject(), event["message"])
        elif status == EVENT_TIMEOUT:
            last_status, last_error = event["last_status"], event["last_error"]
            message = timeout_message(self.timeout or 0.0, self.subject(), last_status, last_error)
        else:
            message = event["message"]
        reason = skip_reason(
            soft_fail=self.soft_fail, never_fail=self.never_fail, soft_fail_applies=not permanent_error
        )
        if reason is not None:
            self.log.info("Skipping due to %s: %s", reason, message)
            return TaskSkippedEvent()
        if not permanent_error and self.retries != 0:
            return TriggerEvent(event)
        self.log.error("Task failed: %s", message)
        return TaskFailedEvent()
