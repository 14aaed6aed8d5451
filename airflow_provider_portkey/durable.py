"""Start a remote job and wait on it in one task: one job per task, cancelled with it, found on retry.

What :class:`~airflow_provider_portkey.operators.run.CreateRunOperator` and
:class:`~airflow_provider_portkey.operators.response.CreateResponseOperator` share. Each is a sensor
(it waits exactly as ``RunSensor``/``ResponseSensor`` do) whose first step is the create:

- **Create, then wait.** The create's answer counts as the wait's first look (a later outage is
  waited out, not taken for a wrong URL); without ``wait_for_completion`` the task ends there.
  Reschedule mode is refused when the DAG is parsed: every reschedule would start a new job.
- **Cancel.** While the task waits, its ``timeout`` and a kill cancel the job unless
  ``cancel_on_kill=False``: on a worker through ``on_kill``/``timed_out``; deferred, the trigger
  cancels it when the task instance stops being deferred (see
  :mod:`~airflow_provider_portkey.triggers.cancellation`); a triggerer restart never does.
- **Re-attach.** With Airflow's task state store (3.3+, ``context["task_state_store"]``), the ids of
  the job are stored right after the create; a later try of the same task instance waits on that
  job instead of starting another. A job that already ended is returned as it ended (or fails the
  task, per ``fail_on_statuses``) unless ``rerun_finished=True``. Without the store (Airflow < 3.3)
  every try starts a new job: Airflow clears a task's XComs when a new try starts, and the API has
  no lookup that finds a thread or a response by its metadata.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, cast

from airflow.providers.common.compat.sdk import AirflowException, Context

from airflow_provider_portkey.errors import PortkeyConfigurationError, PortkeyError, PortkeyNotFoundError

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger

    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.sensors.base import PortkeyPollSensor

    _Base = PortkeyPollSensor
else:
    _Base = object


class Job(Protocol):
    """A run or a response: what a create-and-wait task starts."""

    @property
    def status(self) -> Any: ...

    @property
    def is_terminal(self) -> bool: ...

    def describe(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class CreateAndWaitMixin(_Base):
    """
    Mixed in before a :class:`~airflow_provider_portkey.sensors.base.PortkeyPollSensor` subclass.

    The subclass calls :meth:`set_create_options` in its ``__init__`` and implements :meth:`start`,
    :meth:`started_ids`, :meth:`adopt` and :meth:`cancel_remote`.
    """

    #: The task state store key of the started job's ids (renaming it breaks in-flight retries).
    state_key: str
    wait_for_completion: bool
    cancel_on_kill: bool
    rerun_finished: bool

    def set_create_options(
        self, *, wait_for_completion: bool, cancel_on_kill: bool, rerun_finished: bool
    ) -> None:
        if self.asked_start_from_trigger:
            raise PortkeyConfigurationError(
                f"{self.task_id}: start_from_trigger=True would start the task on the triggerer, "
                f"where no {self.noun} is created; a create-and-wait task starts on a worker"
            )
        if wait_for_completion and self.reschedule:
            raise PortkeyConfigurationError(
                f"{self.task_id}: mode='reschedule' would start a new {self.noun} at every reschedule; "
                "wait with deferrable=True or in poke mode"
            )
        self.wait_for_completion = wait_for_completion
        self.cancel_on_kill = cancel_on_kill
        self.rerun_finished = rerun_finished

    # -- what a subclass says -------------------------------------------------------------------------

    @abstractmethod
    def start(self, hook: PortkeyHook) -> Job:
        """Create the job (one POST) and :meth:`adopt` its ids."""

    @abstractmethod
    def started_ids(self) -> dict[str, str]:
        """The started job's ids by their XCom keys (empty before a start)."""

    @abstractmethod
    def adopt(self, ids: Mapping[str, str]) -> None:
        """Wait on the job these ids (from :meth:`started_ids`) name."""

    @abstractmethod
    def cancel_remote(self, hook: PortkeyHook) -> str:
        """Cancel the job unless it already ended; return what was done, for the log."""

    # -- the shared mechanism ---------------------------------------------------------------------------

    @property
    def waits(self) -> bool:
        return self.wait_for_completion

    def _execute(self, context: Context) -> Any:
        assert self._active_hook is not None  # set by execute()
        job = self._reattach(context, self._active_hook)
        if job is None:
            job = self.start(self._active_hook)
            store = context.get("task_state_store")
            if store is not None:
                stored: dict[str, Any] = dict(self.started_ids())
                store.set(self.state_key, stored)
            self.log.info("Started %s", job.describe())
        self._looked_before = True  # the server answered: a later outage is waited out
        for key, value in self.started_ids().items():
            context["ti"].xcom_push(key=key, value=value)
        if self._ends_wait(job):
            return self._finish(job, context)
        if not self.wait_for_completion:
            self.publish(context, job)
            return job.to_json()
        return super()._execute(context)

    def _reattach(self, context: Context, hook: PortkeyHook) -> Job | None:
        """The job an earlier try of this task instance started, if it is to be waited on."""
        store = context.get("task_state_store")
        ids = store.get(self.state_key) if store is not None else None
        if not isinstance(ids, Mapping) or not ids:
            return None
        self.adopt({str(key): str(value) for key, value in ids.items()})
        try:
            job = cast("Job", self.fetch(hook))
        except PortkeyNotFoundError as error:
            self.log.warning(
                "The %s an earlier try started is gone (%s); starting a new one", self.noun, error
            )
            return None
        if job.is_terminal and self.rerun_finished:
            self.log.info(
                "An earlier try's %s ended (%s); rerun_finished: starting a new one",
                self.noun,
                job.describe(),
            )
            return None
        self.log.info("Re-attached to the %s an earlier try started: %s", self.noun, job.describe())
        return job

    def defer(
        self,
        *,
        trigger: BaseTrigger,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: timedelta | int | float | None = None,
    ) -> NoReturn:
        """
        Defer with a trigger that cancels the job if the task is stopped meanwhile, handing the job's
        ids to the resumed task (a new instance) for a cancel on timeout.
        """
        from airflow_provider_portkey.triggers.cancellation import CancelOnKillMixin

        if isinstance(trigger, CancelOnKillMixin):
            trigger.cancel_on_kill = self.cancel_on_kill
        kwargs = {**(kwargs or {}), "started": self.started_ids()}
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def execute_complete(
        self,
        context: Context,
        event: Mapping[str, Any] | None = None,
        started: Mapping[str, str] | None = None,
    ) -> Any:
        if started:
            self.adopt(started)
        return super().execute_complete(context, event)

    def timed_out(self) -> AirflowException:
        self._cancel("the wait timed out")
        return super().timed_out()

    def on_kill(self) -> None:
        self._cancel("the task was killed")

    def _cancel(self, why: str) -> None:
        """Cancel the started job unless told not to or it already ended; never raises."""
        if not self.cancel_on_kill or not self.started_ids():
            return
        try:
            with self.portkey_hook() as hook:
                self.log.info("%s: %s", why.capitalize(), self.cancel_remote(hook))
        except PortkeyError as error:  # on_kill must not raise: Airflow is already stopping the task
            self.log.warning("Could not cancel %s (%s): %s", self.subject(), why, error)
