"""Every status the provider knows, with no dependency: what a DAG file needs to validate arguments.

The API's run-step and run statuses (which ones are final, which ones unsuccessful), and the
``status`` of the one event a trigger yields. Importing this costs next to nothing, so sensors and
operators check their arguments at DAG-parse time without loading pydantic, the hooks or the
triggers; :mod:`airflow_provider_portkey.models` uses the same enums.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_portkey.models import Run


class RunStepStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """True once the step can no longer change."""
        return self is not RunStepStatus.IN_PROGRESS

    @property
    def succeeded(self) -> bool:
        return self is RunStepStatus.COMPLETED


TERMINAL_STEP_STATUSES: frozenset[RunStepStatus] = frozenset(s for s in RunStepStatus if s.is_terminal)
UNSUCCESSFUL_STEP_STATUSES: frozenset[RunStepStatus] = TERMINAL_STEP_STATUSES - {RunStepStatus.COMPLETED}


class RunStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """True once the run can no longer change (``requires_action`` still can: it waits on us)."""
        return self in TERMINAL_RUN_STATUSES

    @property
    def succeeded(self) -> bool:
        return self is RunStatus.COMPLETED


TERMINAL_RUN_STATUSES: frozenset[RunStatus] = frozenset(
    {RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.COMPLETED, RunStatus.INCOMPLETE, RunStatus.EXPIRED}
)
UNSUCCESSFUL_RUN_STATUSES: frozenset[RunStatus] = TERMINAL_RUN_STATUSES - {RunStatus.COMPLETED}


def run_is_done(run: Run, stop_on_requires_action: bool) -> bool:
    """Where waiting on a run ends: a terminal status, or ``requires_action`` when asked (both modes)."""
    return run.is_terminal or (stop_on_requires_action and run.requires_action)


#: The ``status`` of the one event a :class:`~airflow_provider_portkey.triggers.base.PortkeyPollTrigger`
#: yields.
EVENT_SUCCESS = "success"
EVENT_FAILURE = "failure"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_STATUSES = frozenset({EVENT_SUCCESS, EVENT_FAILURE, EVENT_TIMEOUT, EVENT_ERROR})
