"""Wait for an agent run to finish (or to ask for tool outputs), in poke, reschedule or deferrable mode."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, Unpack

from airflow.providers.common.compat.sdk import AirflowException, Context

from airflow_provider_portkey.errors import RunUnsuccessfulError
from airflow_provider_portkey.sensors.base import PortkeyPollSensor, checked_fail_on_statuses
from airflow_provider_portkey.statuses import UNSUCCESSFUL_RUN_STATUSES, run_is_done
from airflow_provider_portkey.usage import push_run_usage

# Kept out of DAG parsing (see sensors/base.py): the methods that run the wait import what they use.
if TYPE_CHECKING:
    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.models import Run
    from airflow_provider_portkey.triggers.base import Polled, PollOptions
    from airflow_provider_portkey.triggers.run import RunTrigger

DEFAULT_RUN_FAIL_ON_STATUSES: tuple[str, ...] = ("failed", "cancelled", "expired", "incomplete")


class RunSensor(PortkeyPollSensor):
    """
    Wait until a run is terminal, or ``requires_action``; return the run JSON as the API sent it.

    Terminal: ``completed``, ``failed``, ``cancelled``, ``expired``, ``incomplete``. The run's token
    usage, once it has one, is logged and pushed under the XCom key ``usage``. By default a
    run that ``requires_action`` also ends the wait (successfully), so a downstream task can
    compute the tool outputs it asks for (``run["required_action"]``) and hand them to
    ``SubmitToolOutputsOperator``; pass ``stop_on_requires_action=False`` to wait through it.

    Everything else is ``RunStepSensor``'s behaviour, from the same shared mechanism
    (:class:`~airflow_provider_portkey.sensors.base.PortkeyPollSensor`): a final status in
    ``fail_on_statuses`` (default ``failed``, ``cancelled``, ``expired``, ``incomplete``) fails
    the task without retries (``fail_on_statuses=()`` to branch on ``status`` instead); transient
    errors are waited out, permanent ones fail at once; ``timeout``, ``soft_fail``, poke,
    reschedule and deferrable mode mean the same.

    :param thread_id: Thread id (templated).
    :param run_id: Run id (templated).
    :param stop_on_requires_action: End the wait when the run ``requires_action`` (default ``True``).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param fail_on_statuses: Terminal statuses that fail the task.
    :param deferrable: Wait on the triggerer instead of a worker slot (default: Airflow's
        ``[operators] default_deferrable``).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook: ``max_retries``, ``max_retry_wait``.
    """

    template_fields: Sequence[str] = ("thread_id", "run_id", "portkey_conn_id", "trace_id")
    noun = "run"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        stop_on_requires_action: bool = True,
        fail_on_statuses: Collection[str] = DEFAULT_RUN_FAIL_ON_STATUSES,
        **kwargs: Any,
    ) -> None:
        allowed = [status.value for status in UNSUCCESSFUL_RUN_STATUSES]
        super().__init__(fail_on_statuses=checked_fail_on_statuses(fail_on_statuses, allowed), **kwargs)
        self.thread_id = thread_id
        self.run_id = run_id
        self.stop_on_requires_action = stop_on_requires_action

    def fetch(self, hook: PortkeyHook) -> Run:
        return hook.get_run(self.thread_id, self.run_id)

    def is_done(self, polled: Polled) -> bool:
        from airflow_provider_portkey.models import Run

        return isinstance(polled, Run) and run_is_done(polled, self.stop_on_requires_action)

    def parse(self, payload: Any) -> Run:
        from airflow_provider_portkey.models import Run

        return Run.from_api(payload)

    def subject(self) -> str:
        return f"run {self.run_id} (thread {self.thread_id})"

    def target_id(self) -> str:
        return self.run_id

    def unsuccessful(self, polled: Polled) -> AirflowException:
        return RunUnsuccessfulError(polled.describe())

    def publish(self, context: Context, polled: Polled) -> None:
        push_run_usage(context["ti"], self.log, self.subject(), polled.to_json().get("usage"))

    def make_trigger(self, **common: Unpack[PollOptions]) -> RunTrigger:
        from airflow_provider_portkey.triggers.run import RunTrigger

        return RunTrigger(
            thread_id=self.thread_id,
            run_id=self.run_id,
            stop_on_requires_action=self.stop_on_requires_action,
            **common,
        )
