"""Wait for an agent's run step to finish, in poke, reschedule or deferrable mode."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_portkey._compat import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    conf,
)
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

    def _hook(self) -> PortkeyHook:
        from airflow_provider_portkey.hooks.portkey import PortkeyHook

        return PortkeyHook(self.portkey_conn_id)

    def execute(self, context: Context) -> Any:
        self._started_at = self._start_time(context)
        if not self.deferrable:
            return super().execute(context)
        done = self.poke(context)
        if isinstance(done, PokeReturnValue) and done.is_done:
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
        try:
            with self._hook() as hook:
                step = hook.get_run_step(self.thread_id, self.run_id, self.step_id, self.include)
        except PortkeyTransientError as error:
            self.log.warning("Still waiting on step %s after a transient error: %s", self.step_id, error)
        else:
            self._last_status = step.status.value
            if step.is_terminal:
                return PokeReturnValue(is_done=True, xcom_value=self._finish(step))
            self.log.info("Run step %s is %s", self.step_id, step.status.value)
        if time.time() - self._started_at > self.timeout:
            raise AirflowSensorTimeout(self._timeout_message())
        return PokeReturnValue(is_done=False)

    def _timeout_message(self) -> str:
        return (
            f"Sensor has timed out after {self.timeout} s waiting on run step {self.step_id} "
            f"of run {self.run_id} (thread {self.thread_id}); last status seen: {self._last_status}"
        )

    def _finish(self, step: RunStep) -> dict[str, Any]:
        """The XCom value of a terminal step, or a no-retry failure for a status the user fails on."""
        if step.status.value in self.fail_on_statuses:
            raise RunStepUnsuccessfulError(step.describe())
        self.log.info("Done: %s", step.describe())
        return step.to_json()

    def _defer(self) -> None:
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
                include=list(self.include or ()),
                fail_on_statuses=list(self.fail_on_statuses),
                last_status=self._last_status,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + _DEFERRAL_GRACE,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Turn the trigger's one event into the same result or error as poke mode."""
        from airflow_provider_portkey.triggers.run_step import EVENT_ERROR, EVENT_STATUSES, EVENT_TIMEOUT

        if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
            raise PortkeyError(f"RunStepSensor got an unexpected trigger event: {event!r}")
        if event["status"] == EVENT_TIMEOUT:
            self._last_status = event.get("last_status")
            raise AirflowSensorTimeout(self._timeout_message())
        if event["status"] == EVENT_ERROR:
            raise PortkeyError(f"Waiting on run step {self.step_id} failed: {event.get('message')}")
        try:
            step = RunStep.from_api(event["step"])
        except (KeyError, TypeError, ValueError) as error:
            raise PortkeyError(f"RunStepSensor got a trigger event without a valid step: {error}") from None
        return self._finish(step)
