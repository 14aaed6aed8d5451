"""Wait for an agent's run step to finish, in poke, reschedule or deferrable mode."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_portkey.errors import RunStepUnsuccessfulError
from airflow_provider_portkey.sensors.base import PortkeyPollSensor, checked_fail_on_statuses
from airflow_provider_portkey.statuses import UNSUCCESSFUL_STEP_STATUSES

# Kept out of DAG parsing (see sensors/base.py): the methods that run the wait import what they use.
if TYPE_CHECKING:
    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.models import RunStep
    from airflow_provider_portkey.triggers.base import Polled, PollOptions
    from airflow_provider_portkey.triggers.run_step import RunStepTrigger

DEFAULT_FAIL_ON_STATUSES: tuple[str, ...] = ("failed", "cancelled", "expired")


class RunStepSensor(PortkeyPollSensor):
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
    error still fails the task. The waiting itself is
    :class:`~airflow_provider_portkey.sensors.base.PortkeyPollSensor`'s, shared with ``RunSensor``.

    :param thread_id: Thread id (templated).
    :param run_id: Run id (templated).
    :param step_id: Step id (templated).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param include: ``include[]`` values for the request (templated).
    :param fail_on_statuses: Terminal statuses that fail the task.
    :param deferrable: Wait on the triggerer instead of a worker slot (default: Airflow's
        ``[operators] default_deferrable``).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook: ``max_retries``, ``max_retry_wait``.
    """

    template_fields: Sequence[str] = (
        "thread_id",
        "run_id",
        "step_id",
        "include",
        "portkey_conn_id",
        "trace_id",
    )
    noun = "step"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        step_id: str,
        include: Sequence[str] | None = None,
        fail_on_statuses: Collection[str] = DEFAULT_FAIL_ON_STATUSES,
        **kwargs: Any,
    ) -> None:
        allowed = [status.value for status in UNSUCCESSFUL_STEP_STATUSES]
        super().__init__(fail_on_statuses=checked_fail_on_statuses(fail_on_statuses, allowed), **kwargs)
        self.thread_id = thread_id
        self.run_id = run_id
        self.step_id = step_id
        self.include = include

    def fetch(self, hook: PortkeyHook) -> RunStep:
        return hook.get_run_step(self.thread_id, self.run_id, self.step_id, self.include)

    def is_done(self, polled: Polled) -> bool:
        from airflow_provider_portkey.models import RunStep

        return isinstance(polled, RunStep) and polled.is_terminal

    def parse(self, payload: Any) -> RunStep:
        from airflow_provider_portkey.models import RunStep

        return RunStep.from_api(payload)

    def subject(self) -> str:
        return f"run step {self.step_id} of run {self.run_id} (thread {self.thread_id})"

    def target_id(self) -> str:
        return self.step_id

    def unsuccessful(self, polled: Polled) -> AirflowException:
        return RunStepUnsuccessfulError(polled.describe())

    def make_trigger(self, **common: Unpack[PollOptions]) -> RunStepTrigger:
        from airflow_provider_portkey.triggers.run_step import RunStepTrigger

        return RunStepTrigger(
            thread_id=self.thread_id,
            run_id=self.run_id,
            step_id=self.step_id,
            # As given (the hook checks it): unrendered when the task starts on the triggerer.
            include=self.include or (),
            **common,
        )
