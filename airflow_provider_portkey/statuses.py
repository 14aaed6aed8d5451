"""Every status the provider knows, with no dependency: what a DAG file needs to validate arguments.

The run-step, run and response statuses (which ones are final, which ones unsuccessful), the rules for
statuses it does not know, and the ``status`` of the one event a trigger yields. Importing this
costs next to nothing, so sensors and operators check their arguments at DAG-parse time without
loading pydantic, the hooks or the triggers; :mod:`airflow_provider_portkey.models` uses the same
enums (and this module imports nothing of the provider's).

A status outside the enums (self-hosted servers have their own, e.g. a step ``incomplete``) is
not final: a wait logs a warning once and goes on until a known final status or its timeout,
unless the user listed that status in ``fail_on_statuses``, which makes it final and failing.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import StrEnum
from typing import Protocol


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


class ResponseStatus(StrEnum):
    """A response's (the Responses API's); ``POST /responses`` with ``background: true`` starts ``queued``."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"

    @property
    def is_terminal(self) -> bool:
        """True once the response can no longer change."""
        return self not in (ResponseStatus.QUEUED, ResponseStatus.IN_PROGRESS)

    @property
    def succeeded(self) -> bool:
        return self is ResponseStatus.COMPLETED


TERMINAL_RESPONSE_STATUSES: frozenset[ResponseStatus] = frozenset(s for s in ResponseStatus if s.is_terminal)
UNSUCCESSFUL_RESPONSE_STATUSES: frozenset[ResponseStatus] = TERMINAL_RESPONSE_STATUSES - {
    ResponseStatus.COMPLETED
}
#: Every kind of status the models parse (their ``is_terminal`` and ``succeeded`` mean the same).
KnownStatus = RunStepStatus | RunStatus | ResponseStatus


class _RunState(Protocol):
    """What :func:`run_is_done` reads of a run (a :class:`~airflow_provider_portkey.models.Run`)."""

    @property
    def is_terminal(self) -> bool: ...

    @property
    def requires_action(self) -> bool: ...


def run_is_done(run: _RunState, stop_on_requires_action: bool) -> bool:
    """Where waiting on a run ends: a terminal status, or ``requires_action`` when asked (both modes)."""
    return run.is_terminal or (stop_on_requires_action and run.requires_action)


def is_known(status: object) -> bool:
    """Whether a parsed ``status`` is one this provider knows (the models keep others as strings)."""
    return isinstance(status, KnownStatus)


def ends_wait(stops: bool, status: str, fail_on_statuses: Collection[str]) -> bool:
    """
    Whether a wait is over: the waiter stops at this status (``stops``), or the user listed it in
    ``fail_on_statuses`` (the only way a status this provider does not know ends a wait).
    """
    return stops or status in fail_on_statuses


def unknown_status_warning(noun: str, target: str, status: str) -> str:
    """The one warning per wait for a status this provider does not know."""
    return (
        f"{noun.capitalize()} {target} has status {status!r}, which this provider does not know; it is "
        f"not treated as final: waiting on until a known final status or the timeout. List it in "
        f"fail_on_statuses to end the wait (as a failure) when it appears."
    )


_KNOWN = frozenset(str(status) for status in (*RunStepStatus, *RunStatus, *ResponseStatus))
_UNSUCCESSFUL = (*UNSUCCESSFUL_STEP_STATUSES, *UNSUCCESSFUL_RUN_STATUSES, *UNSUCCESSFUL_RESPONSE_STATUSES)
#: Known statuses that are never an unsuccessful end (not final, or success): never in fail_on_statuses.
_NEVER_UNSUCCESSFUL = _KNOWN - {str(s) for s in _UNSUCCESSFUL}
_STATUS_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: An unknown status this close (edits) to a known one is taken for a typo (``faild``, ``canceled``).
_TYPO_DISTANCE = 2


def fail_on_status_problem(status: object, allowed: Collection[str]) -> str | None:
    """
    Why ``status`` cannot be in ``fail_on_statuses``, or ``None`` if it can.

    Allowed: the object's unsuccessful final statuses, and statuses this provider does not know
    (for servers with statuses of their own) when they are lower-case names that are no typo of a
    known status. Refused: a known status that never ends unsuccessfully (``completed``,
    ``in_progress``), a typo, anything that is not a status name.
    """
    if status in allowed:
        return None
    if not isinstance(status, str) or not _STATUS_NAME.fullmatch(status):
        return "is not a status name (lower-case letters, digits and '_')"
    if status in _NEVER_UNSUCCESSFUL:
        return "never ends a wait unsuccessfully"
    if status in _KNOWN:
        return None  # unsuccessful for the other object (a step ``incomplete``): unknown here
    close = sorted(known for known in _KNOWN if _edit_distance(status, known) <= _TYPO_DISTANCE)
    if close:
        return f"looks like a typo of {close[0]!r}"
    return None


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, transpositions."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


#: XCom key of the status a task pushes besides the object's JSON (step, response), for branching.
STATUS_XCOM_KEY = "status"
#: XCom key of a response's output text, pushed besides its JSON.
OUTPUT_TEXT_XCOM_KEY = "output_text"

#: The ``status`` of the one event a :class:`~airflow_provider_portkey.triggers.base.PortkeyPollTrigger`
#: yields.
EVENT_SUCCESS = "success"
EVENT_FAILURE = "failure"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_STATUSES = frozenset({EVENT_SUCCESS, EVENT_FAILURE, EVENT_TIMEOUT, EVENT_ERROR})


def timeout_message(timeout: float, subject: str, last_status: str | None, last_error: str | None) -> str:
    """Why a wait ended at its deadline: the same words whether a worker or the triggerer ends the task."""
    error = f"; last error: {last_error}" if last_error else ""
    return (
        f"Sensor has timed out after {timeout} s waiting on {subject}; last status seen: {last_status}{error}"
    )


def wait_failed_message(subject: str, message: object) -> str:
    """Why a wait ended on a permanent error its trigger reported."""
    return f"Waiting on {subject} failed: {message}"


def skip_reason(*, soft_fail: bool, never_fail: bool, soft_fail_applies: bool = True) -> str | None:
    """
    Why a wait that fails ends skipped instead (``"soft_fail"``, ``"never_fail"``), or ``None``.

    Poke mode's rule, kept by a worker and by a trigger that ends the task alike: ``soft_fail``
    skips timeouts and unsuccessful objects (``soft_fail_applies``), never a permanent error.
    """
    if soft_fail and soft_fail_applies:
        return "soft_fail"
    return "never_fail" if never_fail else None


def unreachable_message(subject: str, conn_id: str, error: object) -> str:
    """Why a wait failed at a first look that reached no server (see ``retries.keeps_waiting``)."""
    return (
        f"Waiting on {subject} failed at its first look, which reached no server: {error}. "
        f"Check the host, port and TLS settings of Airflow connection {conn_id!r}; "
        "once a look has reached the server, such errors are waited out as an outage."
    )
