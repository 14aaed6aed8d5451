"""How long to wait between polls; one formula for poke, reschedule and deferrable mode."""

from __future__ import annotations

import hashlib
from datetime import timedelta

#: Extra time Airflow gives a deferred sensor beyond its own deadline, as a safety net only: the
#: trigger enforces ``timeout`` itself and reports the last status it saw. A trigger that started
#: the task (no worker computed its deadline) takes its deadline back from Airflow's trigger timeout.
DEFERRAL_GRACE = timedelta(minutes=5)


def poll_interval(
    poke_interval: float,
    poke_count: int,
    *,
    exponential_backoff: bool,
    jitter_key: str,
    max_wait: float | None = None,
) -> float:
    """
    Seconds before poll number ``poke_count + 1``, before any cap at the caller's deadline.

    Without ``exponential_backoff``, ``poke_interval``. With it, Airflow's sensor backoff: doubling
    from ``poke_interval``, with a jitter in ``[b, 2b)`` derived from ``jitter_key`` and the count,
    capped at ``max_wait`` (``None`` or ``0``: no cap, as in Airflow). For ``jitter_key =
    f"{dag_id}#{task_id}#{started_at}"``, ``min(poll_interval(...), timeout - int(elapsed))`` equals
    poke mode's ``BaseSensorOperator._get_next_poke_interval`` (``tests/test_polling.py`` checks it
    against Airflow's own function); the trigger applies that cap as its deadline.

    Poke and reschedule mode call Airflow's function itself. Only the trigger uses this copy, and
    keys it on the polled object's ids (``thread#run[#step]``): poke mode's ``started_at`` is a
    monotonic-clock reading in the worker, which a trigger cannot know. So a deferred sensor's waits
    double like poke mode's, from the poll count the sensor reached, but the jitter within each step
    differs; it only spreads sensors apart.
    """
    if not exponential_backoff:
        return poke_interval
    min_backoff = max(int(poke_interval * (2 ** (poke_count - 2))), 1)
    digest = hashlib.sha1(f"{jitter_key}#{poke_count}".encode(), usedforsecurity=False).hexdigest()
    interval = float(min_backoff + int(digest, 16) % min_backoff)
    return min(interval, max_wait) if max_wait else interval


def capped_wait(interval: float, retry_after: float, remaining: float) -> float:
    """
    Seconds to wait before the next poll: ``interval``, at least a ``Retry-After`` the server sent,
    at most the ``remaining`` time before the wait's deadline (so the last poll comes at it, and a
    server asking for an hour cannot make a shorter wait sleep past its end).
    """
    return max(0.0, min(max(interval, retry_after), remaining))
