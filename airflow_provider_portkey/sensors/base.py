"""The waiting every Portkey sensor does, in poke, reschedule and deferrable mode; subclasses say what.

One implementation of the rules, so a run step and a run are waited on the same way:

- done when the object reaches a status the subclass stops at; its JSON (exactly as the API sent
  it) is the XCom ``return_value``, in every mode;
- a final status in ``fail_on_statuses`` fails the task without retries (a retry cannot change a
  finished object), or skips it under ``soft_fail``, keeping the message;
- a transient error (after the hook's own retries) is logged and the wait goes on; a permanent one
  (auth, not found, bad input or configuration, a spent budget) fails at once, and so does a first
  look that reached no server at all (see :func:`~airflow_provider_portkey.retries.keeps_waiting`);
- ``timeout`` means the same in every mode, and its message names the last status and error seen;
  the next poll never comes sooner than a ``Retry-After`` the server sent, and no sleep or retry
  of the hook goes past the deadline;
- deferred, the subclass's :class:`~airflow_provider_portkey.triggers.base.PortkeyPollTrigger`
  polls on the same schedule with the same trace id, and its one event is turned into the same
  result or error as poke mode.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Unpack

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    conf,
)

from airflow_provider_portkey.connection_fields import DEFAULT_CONN_NAME
from airflow_provider_portkey.errors import PortkeyConfigurationError, PortkeyError, PortkeyRequestError
from airflow_provider_portkey.polling import DEFERRAL_GRACE, capped_wait
from airflow_provider_portkey.retries import keeps_waiting
from airflow_provider_portkey.statuses import (
    EVENT_ERROR,
    EVENT_STATUSES,
    EVENT_TIMEOUT,
    ends_wait,
    fail_on_status_problem,
    is_known,
    skip_reason,
    timeout_message,
    unknown_status_warning,
    unreachable_message,
    wait_failed_message,
)
from airflow_provider_portkey.tracing import PortkeyTaskMixin

# Only for type hints: a DAG file that imports a sensor must not load the hooks, the triggers, the
# pydantic models or the HTTP clients; execution imports them where it needs them.
if TYPE_CHECKING:
    from airflow.triggers.base import StartTriggerArgs

    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.triggers.base import Polled, PollOptions, PortkeyPollTrigger


def checked_fail_on_statuses(value: Collection[str], allowed: Collection[str]) -> tuple[str, ...]:
    """
    ``fail_on_statuses`` as a tuple (one string is one status): ``allowed``, or statuses this
    provider does not know that are no typo of a known one (see :func:`fail_on_status_problem`).
    """
    if isinstance(value, str):
        value = (value,)
    for status in value:
        problem = fail_on_status_problem(status, allowed)
        if problem:
            raise PortkeyConfigurationError(
                f"fail_on_statuses has {status!r}, which {problem}; allowed values are {sorted(allowed)} "
                "(or empty), or a status of your server's that this provider does not know"
            )
    return tuple(value)


class PortkeyPollSensor(PortkeyTaskMixin, BaseSensorOperator):
    """
    Wait until an API object reaches a status the subclass stops at (see the module docstring).

    Subclasses set :attr:`noun` and implement :meth:`fetch`, :meth:`is_done`, :meth:`parse`,
    :meth:`subject`, :meth:`target_id`, :meth:`unsuccessful` and :meth:`make_trigger`.

    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param fail_on_statuses: Final statuses that fail the task (the subclass checks them).
    :param deferrable: Wait on the triggerer instead of a worker slot (default: Airflow's
        ``[operators] default_deferrable``).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook, in every mode: ``max_retries``,
        ``max_retry_wait`` (override the connection's).
    :param start_from_trigger: With ``deferrable``, on Airflow >= 3.3: wait with no worker at all.
        The scheduler hands the task to the triggerer (templated fields are rendered there), and
        the trigger ends it with the same outcome and XComs. Opt-in, because no task code runs on
        a worker: see :attr:`start_trigger_args` and ``docs/workflows.md`` for what that drops. A
        mapped task, or one with an ``execution_timeout``, still starts on a worker, and then only
        ends on the triggerer. Ignored (today's path) on older Airflow.
    """

    ui_color = "#e8f1ff"
    #: How log lines name what is waited on ("step", "run"); also the key of its JSON in an event.
    noun: str

    def __init__(
        self,
        *,
        portkey_conn_id: str = DEFAULT_CONN_NAME,
        fail_on_statuses: tuple[str, ...] = (),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        trace_id: str | None = None,
        hook_params: Mapping[str, Any] | None = None,
        start_from_trigger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_portkey_options(portkey_conn_id, trace_id, hook_params)
        self.fail_on_statuses = fail_on_statuses
        self.deferrable = deferrable
        self._set_zero_worker(start_from_trigger)
        self._last_status: str | None = None
        #: The last look's error, for the timeout message (a wait that only saw errors says why).
        self._last_error: str | None = None
        self._started_at = 0.0
        #: Whether an earlier look of this wait (an earlier reschedule) already reached the server.
        self._looked_before = False
        #: A ``Retry-After`` from the last poke's transient error: the floor of the next interval.
        self._retry_after = 0.0
        #: How many times this sensor looked in this process (the backoff's poke count).
        self._poke_count = 0
        #: The hook of the running ``execute`` (one session across pokes, closed at its end).
        self._active_hook: PortkeyHook | None = None
        #: Statuses this provider does not know that this wait already warned about.
        self._unknown_seen: set[str] = set()

    # -- what a subclass says -------------------------------------------------------------------------

    @abstractmethod
    def fetch(self, hook: PortkeyHook) -> Polled:
        """One look at the object."""

    @abstractmethod
    def is_done(self, polled: Polled) -> bool:
        """Whether the wait is over."""

    @abstractmethod
    def parse(self, payload: Any) -> Polled:
        """The object from a trigger event's JSON (raises ``KeyError``/``TypeError``/``ValueError``)."""

    @abstractmethod
    def subject(self) -> str:
        """What is waited on, for messages, e.g. ``run r (thread t)``."""

    @abstractmethod
    def target_id(self) -> str:
        """The id log lines name."""

    @abstractmethod
    def unsuccessful(self, polled: Polled) -> AirflowException:
        """The no-retry failure for an object that ended in one of ``fail_on_statuses``."""

    @abstractmethod
    def make_trigger(self, **common: Unpack[PollOptions]) -> PortkeyPollTrigger:
        """The trigger to defer to, given the kwargs every trigger takes (deadline, schedule, trace)."""

    # -- the shared mechanism ---------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        self._started_at = self._start_time(context)
        with self.traced_hook(context) as hook:
            hook.deadline = self._started_at + self.timeout  # its retries never outlast the wait
            self._active_hook = hook
            try:
                return self._execute(context)
            finally:
                self._active_hook = None

    def _execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            done = self.poke(context)
        except AirflowSkipException:
            raise
        except Exception as error:
            # BaseSensorOperator.execute does this for every poke in poke mode; only never_fail
            # turns an error into a skip (soft_fail and timeouts are already handled in poke).
            if self.never_fail:
                raise AirflowSkipException(f"Skipping due to never_fail: {error}") from error
            raise
        if done.is_done:
            return done.xcom_value
        self._defer()

    def _start_time(self, context: Context) -> float:
        """When this wait began, as Airflow counts it (the first try, across reschedules)."""
        if self.reschedule:
            first = context["ti"].get_first_reschedule_date(context)
            if first is not None:
                self._looked_before = True  # that earlier look did not fail: it reached the server
                return first.timestamp()
        return time.time()

    def _look(self) -> Polled:
        if self._active_hook is not None:
            return self.fetch(self._active_hook)
        with self.portkey_hook() as hook:  # poke() called on its own, outside execute
            return self.fetch(hook)

    def poke(self, context: Context) -> PokeReturnValue:
        self._poke_count += 1
        self._retry_after = 0.0
        try:
            polled = self._look()
        except PortkeyRequestError as error:
            first_look = self._poke_count == 1 and not self._looked_before
            if not keeps_waiting(error, first_look=first_look):
                if first_look and error.transient:  # transient, yet no server was ever reached
                    raise self._final(self._unreachable(error), soft_fail_applies=False) from error
                raise
            self.log.warning(
                "Still waiting on %s %s after a transient error: %s", self.noun, self.target_id(), error
            )
            self._last_error = str(error)
            self._retry_after = error.retry_after or 0.0
        else:
            self._last_status, self._last_error = str(polled.status), None
            if self._ends_wait(polled):
                return PokeReturnValue(is_done=True, xcom_value=self._finish(polled, context))
            self.log.info("%s %s is %s", self.noun.capitalize(), self.target_id(), self._last_status)
        if time.time() - self._started_at >= self.timeout:
            raise self.timed_out()
        return PokeReturnValue(is_done=False)

    def _unreachable(self, error: PortkeyRequestError) -> PortkeyError:
        return PortkeyError(unreachable_message(self.subject(), self.portkey_conn_id, error))

    def _ends_wait(self, polled: Polled) -> bool:
        """:meth:`is_done`, or a status listed in ``fail_on_statuses``; warns once about an unknown one."""
        status = str(polled.status)
        if not is_known(polled.status) and status not in self._unknown_seen:
            self._unknown_seen.add(status)
            self.log.warning(unknown_status_warning(self.noun, self.target_id(), status))
        return ends_wait(self.is_done(polled), status, self.fail_on_statuses)

    def _get_next_poke_interval(
        self, started_at: Any, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        """
        Airflow's interval (with its backoff), never sooner than a ``Retry-After`` the server sent,
        and never past the sensor's own deadline (Airflow would sleep a whole ``poke_interval``
        even when ``timeout`` ends sooner): the last poke comes at the deadline.

        Airflow 3.0.6 to 3.3.2 offer no public hook for the interval, so this overrides the private
        method and calls it; ``tests/test_polling.py`` fails if its signature or result changes.
        """
        interval: float = super()._get_next_poke_interval(started_at, run_duration, poke_count)
        remaining = self.timeout - (time.time() - self._started_at)
        return capped_wait(interval, self._retry_after, remaining)

    def timed_out(self) -> AirflowException:
        """The exception that ends a wait past ``timeout`` (a subclass may clean up first)."""
        return self._final(AirflowSensorTimeout(self._timeout_message()))

    def _timeout_message(self) -> str:
        return timeout_message(self.timeout, self.subject(), self._last_status, self._last_error)

    def _final(self, error: AirflowException, *, soft_fail_applies: bool = True) -> AirflowException:
        """
        The exception that ends the task: ``error``, or a skip under ``soft_fail``/``never_fail``.

        Airflow would skip too, but with a generic reason ("Skipping due to soft_fail is set to
        True.") that loses the last status or the object's error; this keeps the message, and makes
        the first check and the resumed deferral follow poke mode's rules (``soft_fail`` skips only
        timeouts and unsuccessful objects, never a permanent error).
        """
        reason = skip_reason(
            soft_fail=self.soft_fail, never_fail=self.never_fail, soft_fail_applies=soft_fail_applies
        )
        return error if reason is None else AirflowSkipException(f"Skipping due to {reason}: {error}")

    def publish(self, context: Context, polled: Polled) -> None:
        """Push what else a finished object offers downstream (XCom keys besides its JSON); none here."""

    def _finish(self, polled: Polled, context: Context) -> dict[str, Any]:
        """The XCom value of a finished object, or a no-retry failure for a status the user fails on."""
        self.publish(context, polled)
        if str(polled.status) in self.fail_on_statuses:
            raise self._final(self.unsuccessful(polled))
        self.log.info("Done: %s", polled.describe())
        return polled.to_json()

    def _defer(self) -> NoReturn:
        options = self._poll_options()
        options["deadline"] = self._started_at + self.timeout
        options["last_status"] = self._last_status
        # The trigger's requests join this task try's Portkey trace.
        options["trace_id"] = self.task_trace.trace_id
        options["metadata"] = dict(self.task_trace.metadata)
        options["polls_done"] = self._poke_count
        options["min_first_wait"] = self._retry_after
        trigger = self.make_trigger(**options)
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_GRACE,
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """
        Resume after the trigger's event with poke mode's rules.

        ``BaseSensorOperator.resume_execution`` would skip on *any* error under ``soft_fail`` (poke
        mode fails on a permanent error such as a 404) and replace the reason with a generic one;
        :meth:`execute_complete` applies the same rules as :meth:`poke` itself. Anything else
        (``__fail__`` after a trigger crash or Airflow's deferral timeout) keeps Airflow's handling.
        """
        if next_method == "execute_complete":
            return self.execute_complete(context, **(next_kwargs or {}))
        return super().resume_execution(next_method, next_kwargs, context)

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        """Turn the trigger's one event into the same result or error as poke mode."""
        name = type(self).__name__
        if not isinstance(event, Mapping) or event.get("status") not in EVENT_STATUSES:
            raise PortkeyError(f"{name} got an unexpected trigger event: {event!r}")
        if event["status"] == EVENT_TIMEOUT:
            self._last_status = event.get("last_status")
            self._last_error = event.get("last_error")
            raise self.timed_out()
        if event["status"] == EVENT_ERROR:
            error = PortkeyError(wait_failed_message(self.subject(), event.get("message")))
            raise self._final(error, soft_fail_applies=False)
        try:
            polled = self.parse(event[self.noun])
        except (KeyError, TypeError, ValueError) as error:
            raise PortkeyError(f"{name} got a trigger event without a valid {self.noun}: {error}") from None
        if not ends_wait(self.is_done(polled), str(polled.status), self.fail_on_statuses):
            raise PortkeyError(
                f"{name} got a {event['status']!r} event for a {self.noun} that is still {polled.status}"
            )
        return self._finish(polled, context)

    # -- waiting with no worker (Airflow >= 3.3, opt-in) ----------------------------------------------

    def _set_zero_worker(self, asked: bool) -> None:
        """
        Whether the scheduler starts this task on the triggerer, and whether the trigger ends it.

        Starting there needs the deadline back from Airflow's trigger timeout; an
        ``execution_timeout`` would shorten that, so such a task starts on a worker (and ends on
        the triggerer all the same).
        """
        from airflow_provider_portkey._compat import ZERO_WORKER_WAITS

        if not isinstance(asked, bool):
            raise PortkeyConfigurationError(
                f"{self.task_id}: start_from_trigger must be True or False, got {asked!r}"
            )
        if asked and not self.deferrable:
            raise PortkeyConfigurationError(
                f"{self.task_id}: start_from_trigger=True waits on the triggerer: it needs deferrable=True"
            )
        #: As given, on every Airflow (a subclass that cannot start there refuses it).
        self.asked_start_from_trigger = asked
        self.ends_on_triggerer = asked and ZERO_WORKER_WAITS
        self.start_from_trigger = self.ends_on_triggerer and self.execution_timeout is None

    def _poll_options(self) -> PollOptions:
        """
        The trigger kwargs that come from the sensor's options alone, not from a look: its
        schedule, connection and trace id, its hook's retries, and (when it may) what the trigger
        needs to end the task itself.
        """
        options: PollOptions = {
            "deadline": None,
            "portkey_conn_id": self.portkey_conn_id,
            "poll_interval": self.poke_interval,
            "exponential_backoff": self.exponential_backoff,
            "max_wait": self.max_wait.total_seconds() if self.max_wait else None,
            "fail_on_statuses": list(self.fail_on_statuses),
            "trace_id": self.trace_id,
            # The trigger's hook retries as this task's does.
            "max_retries": self.hook_params.get("max_retries"),
            "max_retry_wait": self.hook_params.get("max_retry_wait"),
        }
        if self.ends_on_triggerer:
            options["end_task"] = True
            options["timeout"] = self.timeout
            options["soft_fail"] = self.soft_fail
            options["never_fail"] = self.never_fail
            options["retries"] = self.retries
        return options

    def _start_trigger_args(self) -> StartTriggerArgs | None:
        """
        What the scheduler needs to start this task on the triggerer (``None``: on a worker).

        The kwargs are this sensor's, unrendered: Airflow 3.3 renders the fields both the sensor
        and the trigger template (ids, ``include``, connection, ``trace_id``) on the triggerer.
        There is no worker to compute a deadline or a trace id: ``deadline`` is ``None`` and the
        trigger takes both from the task instance (see ``PortkeyPollTrigger.start_from_trigger``).
        """
        if not getattr(self, "start_from_trigger", False):
            return None
        from airflow.triggers.base import StartTriggerArgs

        options = self._poll_options()
        options["start_from_trigger"] = True
        try:
            trigger = self.make_trigger(**options)
        except AttributeError:
            # Airflow reads it after each class's __init__: the subclass has not set its ids yet.
            return None
        classpath, kwargs = trigger.serialize()
        return StartTriggerArgs(
            trigger_cls=classpath,
            trigger_kwargs=kwargs,
            next_method="execute_complete",
            next_kwargs=None,
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_GRACE,
        )


class _StartTriggerArgs:
    """
    ``start_trigger_args`` computed from the sensor's options when Airflow reads it.

    Read on the class (a mapped task: Airflow 3.3 cannot start those on the triggerer), it is
    ``None``, so a mapped sensor starts on a worker. A value set on an instance wins.
    """

    def __get__(self, sensor: PortkeyPollSensor | None, owner: type) -> StartTriggerArgs | None:
        return None if sensor is None else sensor._start_trigger_args()


PortkeyPollSensor.start_trigger_args = _StartTriggerArgs()  # type: ignore[assignment]
