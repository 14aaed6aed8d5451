"""How long to wait between polls; one formula for poke, reschedule and deferrable mode."""

from __future__ import annotations

import hashlib


def poll_interval(
    poke_interval: float,
    poke_count: int,
    *,
    exponential_backoff: bool,
    jitter_key: str,
    max_wait: float | None = None,
) -> float:
    """
    Seconds before poll number ``poke_count + 1``.

    With ``exponential_backoff`` this is Airflow's own sensor backoff (doubling from
    ``poke_interval`` with a deterministic jitter from ``jitter_key``), so a deferred sensor
    polls on the same schedule as it would in poke mode: with ``jitter_key`` set to
    ``f"{dag_id}#{task_id}#{started_at}"`` it equals ``BaseSensorOperator._get_next_poke_interval``.
    Like Airflow, a ``max_wait`` of ``None`` or ``0`` sets no cap.
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
