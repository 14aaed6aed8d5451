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
from typing import Any, Protocol, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_portkey.connection_fields import DEFAULT_CONN_NAME
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
from airflow_provider_portkey.polling import capped_wait, poll_interval
from airflow_provider_portkey.retries import keeps_waiting
from airflow_provider_portkey.statuses import (
    EVENT_ERROR,
    EVENT_FAILURE,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    ends_wait,
    is_known,
    unknown_status_warning,
)


class Polled(Protocol):
    """What a trigger or sensor waits on (a run step, a run): a status, a summary, its JSON."""

    @property
    def status(self) -> Any: ...

    def describe(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class _RequiredPollOptions(TypedDict):
    deadline: float


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
    """

    #: How log lines name what is waited on ("step", "run"); also the key of its JSON in an event.
    noun: str

    def __init__(
        self,
        *,
        deadline: float,
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
        self.deadline = float(deadline)
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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self._wait()
        yield TriggerEvent(event)

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
                # Not a first look: the sensor looked (and reached the server) before deferring.
                if not keeps_waiting(error, first_look=False):
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
        remaining = self.deadline - time.time()
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
