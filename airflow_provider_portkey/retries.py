"""Whether a failed request is sent again, and when; whether a wait goes on after a failed look.

The one place these are decided. The hooks and the waits (sensor, trigger) only act on the answer:
sleep and send again, or raise; keep waiting, or fail.

The hooks run their own short loop rather than tenacity's: each decision needs the request (a POST
that may have acted is not repeated), the error's facts (``Retry-After``, what it proves), the
attempt and the caller's deadline at once, and one function reading all of them is shorter and
clearer than the same rules spread over tenacity's separate ``retry``, ``wait`` and ``stop``
callbacks (with ``before_sleep`` for the log line), twice (``Retrying`` and ``AsyncRetrying``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeGuard

from airflow_provider_portkey.errors import PortkeyConnectionError, PortkeyRequestError

if TYPE_CHECKING:  # the sensors import this module at DAG-parse time: no models, no HTTP clients
    from airflow_provider_portkey.protocol import ApiRequest

#: Statuses that prove the request was refused before anything was done. 429: Portkey and the
#: upstreams rate limit before processing. 503: Portkey and OpenAI-compatible upstreams answer
#: "unavailable" (overloaded, in maintenance, no healthy target) before accepting work; an
#: assumption about the servers, documented in docs/workflows.md. 408, 500, 502 and 504 may come
#: after the upstream acted (the gateway timed out or lost the answer), so they prove nothing.
NOTHING_DONE_STATUSES = frozenset({429, 503})


def proves_nothing_done(error: PortkeyRequestError) -> bool:
    """Whether the failure proves the server did nothing: it never got the request, or refused it first."""
    if isinstance(error, PortkeyConnectionError):
        return error.never_sent
    return error.status in NOTHING_DONE_STATUSES


@dataclass(frozen=True)
class RetryDecision:
    """Send again after ``delay`` seconds, or (``delay`` is ``None``) raise the error; ``reason`` says why."""

    delay: float | None
    #: ``retry``; or why not: ``permanent`` (asking again gets the same answer), ``spent`` (no
    #: retries left), ``unsafe`` (the server may already have acted), ``deadline`` (the wait would
    #: end after the caller's deadline).
    kind: Literal["retry", "permanent", "spent", "unsafe", "deadline"]
    reason: str


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, never shorter than a ``Retry-After`` (both capped)."""

    max_retries: int
    max_wait: float
    backoff_base: float = 1.0

    def decide(
        self,
        request: ApiRequest,
        error: PortkeyRequestError,
        attempt: int,
        *,
        deadline: float | None = None,
        rand: Callable[[], float] | None = None,
    ) -> RetryDecision:
        """
        What to do after attempt number ``attempt`` (0 for the first) failed with ``error``.

        A ``request`` that is not safe to repeat (a POST that creates or changes something) is
        sent again only after a failure that proves nothing was done (:func:`proves_nothing_done`).
        No wait ends after ``deadline`` (epoch seconds): a sensor's hook gives up in time for the
        sensor to end at its own deadline.
        """
        if not error.transient:
            return RetryDecision(None, "permanent", "asking again gets the same answer")
        if attempt >= self.max_retries:
            return RetryDecision(None, "spent", f"all {self.max_retries} retries used")
        if not request.safe_to_repeat and not proves_nothing_done(error):
            return RetryDecision(
                None,
                "unsafe",
                "the server may already have acted on it, and sending it again could do it twice",
            )
        delay = (rand or random.random)() * min(self.max_wait, self.backoff_base * 2.0**attempt)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        delay = min(self.max_wait, delay)
        if deadline is not None and time.time() + delay >= deadline:
            return RetryDecision(
                None, "deadline", f"the next try ({delay:.1f} s away) would come after the wait's deadline"
            )
        return RetryDecision(delay, "retry", f"retry {attempt + 1} of {self.max_retries} in {delay:.1f} s")


def keeps_waiting(error: BaseException, *, first_look: bool) -> TypeGuard[PortkeyRequestError]:
    """
    Whether a sensor or trigger waits on after a look failed with ``error`` (after the hook's retries).

    Transient errors are waited out, with one exception: on the first look of a wait, a failure
    that reached no server at all (refused, host name not resolved, TLS refused, connect timeout)
    almost always means a wrong host, port or TLS setting in the connection, which waiting
    cannot fix; it fails at once with its cause. Once a look has reached the server, the same
    failure is an outage, and is waited out until the wait's own deadline.
    """
    if not isinstance(error, PortkeyRequestError) or not error.transient:
        return False
    return not (first_look and isinstance(error, PortkeyConnectionError) and not error.reached_server)
