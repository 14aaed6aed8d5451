"""Wait for an agent's run step to finish, in poke, reschedule or deferrable mode."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_portkey._compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    conf,
)
from airflow_provider_portkey.core import validate_include
from airflow_provider_portkey.errors import (
    PortkeyConfigurationError,
    PortkeyError,
    PortkeyTransientError,
    RunStepUnsuccessfulError,
)
from airflow_provider_portkey.models import UNSUCCESSFUL_STEP_STATUSES, RunStep

if TYPE_CHECKING:
    from airflow_provider_portkey.hooks.portkey import PortkeyHook

DEFAULT_FAIL_ON_STATUSES: tuple[str, ...] = ("failed", "cancelled", "expired")

#: Extra time Airflow gives a deferred sensor beyond its own deadline, as a safety net only:
#: the trigger enforces ``timeout`` itself and reports the last status it saw.
_DEFERRAL_GRACE = timedelta(minutes=5)


def validate_fail_on_statuses(value: Collection[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    allowed = sorted(status.value for status in UNSUCCESSFUL_STEP_STATUSES)
    for status in value:
        if status not in allowed:
            raise PortkeyConfigurationError(
                f"fail_on_statuses has {status!r}; allowed values are {allowed} (or empty)"
            )
    return tuple(value)


class RunStepSensor(BaseSensorOperator):
    """
    Wait until a run step reaches a terminal status; return the step JSON exactly as the API sent it.

    By default a step that ends ``failed``, ``cancelled`` or ``expired`` fails the task without
    retries (a retry cannot change a finished step), with the status and ``last_error`` in the
    message. Pass ``fail_on_statuses=()`` to succeed on any terminal status and branch downstream
    on ``status`` instead.

    Transient errors (connection errors, 408, 429, 5xx, after the hook's own retries) are logged
    and the sensor keeps waiting; permanent ones (auth, not found, bad input or configuration)
    fail at once. ``timeout`` means the same in every mode, and its message names the last status.
    The next poke never comes sooner than a ``Retry-After`` the server sent.

    ``soft_fail`` skips the task instead of failing it on a timeout or an unsuccessful step (as
    Airflow does in poke mode), in every mode, and the skip reason keeps the message; a permanent
    error still fails the task.

    :param thread_id: Thread id (templated).
    :param run_id: Run id (templated).
    :param step_id: Step id (templated).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param include: ``include[]`` values for the request (templated).
    :param fail_on_statuses: Terminal statuses that fail the task.
    :param deferrable: Wait on the triggerer instead of a worker slot.
    """

    template_fields: Sequence[str] = ("thread_id", "run_id", "step_id", "include", "portkey_conn_id")
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        step_id: str,
        portkey_conn_id: str = "portkey_default",
        include: Sequence[str] | None = None,
        fail_on_statuses: Collection[str] = DEFAULT_FAIL_ON_STATUSES,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.thread_id = thread_id
        self.run_id = run_id
        self.step_id = step_id
        self.portkey_conn_id = portkey_conn_id
        self.include = include
        self.fail_on_statuses = validate_fail_on_statuses(fail_on_statuses)
        self.deferrable = deferrable
        self._last_status: str | None = None
        self._started_at = 0.0
        #: A ``Retry-After`` from the last poke's transient error: the floor of the next interval.
        self._retry_after = 0.0
        #: How many times this sensor asked for the step in this process (the backoff's poke count).
        self._poke_count = 0

    def _hook(self) -> PortkeyHook:
        from airflow_provider_portkey.hooks.portkey import PortkeyHook

        return PortkeyHook(self.portkey_conn_id)

    def execute(self, context: Context) -> Any:
        self._started_at = self._start_time(context)
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
                return first.timestamp()
        return time.time()

    def poke(self, context: Context) -> PokeReturnValue:
        self._poke_count += 1
        self._retry_after = 0.0
        try:
            with self._hook() as hook:
                step = hook.get_run_step(self.thread_id, self.run_id, self.step_id, self.include)
        except PortkeyTransientError as error:
            self.log.warning("Still waiting on step %s after a transient error: %s", self.step_id, error)
            self._retry_after = error.retry_after or 0.0
        else:
            self._last_status = step.status.value
            if step.is_terminal:
                return PokeReturnValue(is_done=True, xcom_value=self._finish(step))
            self.log.info("Run step %s is %s", self.step_id, step.status.value)
        if time.time() - self._started_at > self.timeout:
            raise self._final(AirflowSensorTimeout(self._timeout_message()))
        return PokeReturnValue(is_done=False)

    def _get_next_poke_interval(
        self, started_at: Any, run_duration: Callable[[], float], poke_count: int
    ) -> float:
        """Airflow's interval (with its backoff), but never sooner than a ``Retry-After`` the server sent."""
        interval: float = super()._get_next_poke_interval(started_at, run_duration, poke_count)
        return max(interval, self._retry_after)

    def _timeout_message(self) -> str:
        return (
            f"Sensor has timed out after {self.timeout} s waiting on run step {self.step_id} "
            f"of run {self.run_id} (thread {self.thread_id}); last status seen: {self._last_status}"
        )

    def _final(self, error: AirflowException, *, soft_fail_applies: bool = True) -> AirflowException:
        """
        The exception that ends the task: ``error``, or a skip under ``soft_fail``/``never_fail``.

        Airflow would skip too, but with a generic reason ("Skipping due to soft_fail is set to
        True.") that loses the last status or the step's error; this keeps the message, and makes
        the first check and the resumed deferral follow poke mode's rules (``soft_fail`` skips only
        timeouts and unsuccessful steps, never a permanent error).
        """
        if self.soft_fail and soft_fail_applies:
            return AirflowSkipException(f"Skipping due to soft_fail: {error}")
        if self.never_fail:
            return AirflowSkipException(f"Skipping due to never_fail: {error}")
        return error

    def _finish(self, step: RunStep) -> dict[str, Any]:
        """The XCom value of a terminal step, or a no-retry failure for a status the user fails on."""
        if step.status.value in self.fail_on_statuses:
            raise self._final(RunStepUnsuccessfulError(step.describe()))
        self.log.info("Done: %s", step.describe())
        return step.to_json()

    def _defer(self) -> NoReturn:
        from airflow_provider_portkey.triggers.run_step import RunStepTrigger

        deadline = self._started_at + self.timeout
        self.defer(
            trigger=RunStepTrigger(
                portkey_conn_id=self.portkey_conn_id,
                thread_id=self.thread_id,
                run_id=self.run_id,
                step_id=self.step_id,
                deadline=deadline,
                poll_interval=self.poke_interval,
                exponential_backoff=self.exponential_backoff,
                max_wait=self.max_wait.total_seconds() if self.max_wait else None,
                # A templated include can render to one string: never hand its characters on.
                include=list(validate_include(self.include)),
                fail_on_statuses=list(self.fail_on_statuses),
                last_status=self._last_status,
                polls_done=self._poke_count,
                min_first_wait=self._retry_after,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + _DEFERRAL_GRACE,
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

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Turn the trigger's one event into the same result or error as poke mode."""
        from airflow_provider_portkey.triggers.run_step import EVENT_ERROR, EVENT_STATUSES, EVENT_TIMEOUT

        if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
            raise PortkeyError(f"RunStepSensor got an unexpected trigger event: {event!r}")
        if event["status"] == EVENT_TIMEOUT:
            self._last_status = event.get("last_status")
            raise self._final(AirflowSensorTimeout(self._timeout_message()))
        if event["status"] == EVENT_ERROR:
            error = PortkeyError(f"Waiting on run step {self.step_id} failed: {event.get('message')}")
            raise self._final(error, soft_fail_applies=False)
        try:
            step = RunStep.from_api(event["step"])
        except (KeyError, TypeError, ValueError) as error:
            raise PortkeyError(f"RunStepSensor got a trigger event without a valid step: {error}") from None
        if not step.is_terminal:
            raise PortkeyError(
                f"RunStepSensor got a {event['status']!r} event for a step that is still {step.status.value}"
            )
        return self._finish(step)
