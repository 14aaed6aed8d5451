"""The Responses API's statuses and retention, with no dependency: what a DAG file validates against.

Kept apart from :mod:`airflow_provider_portkey.statuses` (the Assistants API's) so the two APIs can
evolve separately; like it, importing this costs next to nothing at DAG-parse time.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from enum import StrEnum


class ResponseStatus(StrEnum):
    """``status`` of a response (``POST /responses`` with ``background: true`` starts ``queued``)."""

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
DEFAULT_RESPONSE_FAIL_ON_STATUSES: tuple[str, ...] = ("failed", "cancelled", "incomplete")

#: How long providers keep a background response for polling after it ends (OpenAI: about ten
#: minutes). A poll later than that may get 404 instead of the result.
BACKGROUND_RETENTION = timedelta(minutes=10)


class ResponseRetentionWarning(UserWarning):
    """The polling interval may outlive the provider's retention of a finished background response."""


def warn_if_polls_outlive_retention(
    task_id: str, poke_interval: float, *, exponential_backoff: bool, max_wait: timedelta | float | None
) -> None:
    """
    Warn (at DAG-parse time) when the gap between two polls can exceed :data:`BACKGROUND_RETENTION`.

    A response that ends just after a poll must still be there at the next one; otherwise the wait
    ends with "not found" instead of the result.
    """
    longest = poke_interval
    if exponential_backoff:
        cap = max_wait.total_seconds() if isinstance(max_wait, timedelta) else max_wait
        longest = cap if cap else float("inf")  # Airflow's backoff has no cap without max_wait
    limit = BACKGROUND_RETENTION.total_seconds()
    if longest > limit:
        shown = (
            "unbounded (exponential_backoff without max_wait)"
            if longest == float("inf")
            else f"{longest:g} s"
        )
        warnings.warn(
            f"{task_id}: the time between two polls can reach {shown}, longer than the ~{limit:g} s "
            "providers keep a finished background response; a result may be gone (404) before it is "
            "seen. Poll more often (poke_interval, max_wait).",
            ResponseRetentionWarning,
            stacklevel=3,
        )
