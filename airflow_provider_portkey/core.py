"""The request/response core shared by the sync hook and the async trigger.

Plain code with no I/O: it builds requests, validates ids, interprets responses and decides
retries. The two transports (``requests`` in the hook, ``httpx`` in the trigger) only move bytes,
so the two paths cannot drift apart.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from pydantic import ValidationError

from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyAuthError,
    PortkeyBadResponseError,
    PortkeyClientError,
    PortkeyConfigurationError,
    PortkeyConnectionError,
    PortkeyNotFoundError,
    PortkeyRateLimitError,
    PortkeyRedirectError,
    PortkeyRequestError,
    PortkeyServerError,
    PortkeyTransientError,
)
from airflow_provider_portkey.models import RunStep, RunStepList

_T = TypeVar("_T")

#: The only ``include[]`` value the run-step endpoints accept.
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
INCLUDE_VALUES = frozenset({FILE_SEARCH_CONTENT})

_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_EXCERPT_CHARS = 200


def validate_id(name: str, value: object) -> str:
    """Reject what a template can render to by mistake (``None``, ``""``, ``../runs``) before any request."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or value == "None":
        raise InvalidIdError(
            f"{name} must be a non-empty API id of letters, digits, '_' or '-' (at most 256), got {value!r}"
        )
    return value


def validate_include(include: Collection[str] | None) -> tuple[str, ...]:
    if include is None:
        return ()
    if isinstance(include, str):
        include = [include]
    values = tuple(include)
    unknown = [value for value in values if value not in INCLUDE_VALUES]
    if unknown:
        raise PortkeyConfigurationError(
            f"include has unsupported value {unknown[0]!r}; the API accepts only {FILE_SEARCH_CONTENT!r}"
        )
    return values


@dataclass(frozen=True)
class ApiRequest:
    """What to send, relative to the connection's base URL."""

    method: Literal["GET", "POST", "DELETE"]
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: Mapping[str, Any] | None = None

    @property
    def description(self) -> str:
        return f"{self.method} {self.path}"


def _path(*segments: tuple[str, object] | str) -> str:
    parts = []
    for segment in segments:
        if isinstance(segment, str):
            parts.append(segment)
        else:
            parts.append(quote(validate_id(*segment), safe=""))
    return "/" + "/".join(parts)


def run_step_request(
    thread_id: object, run_id: object, step_id: object, include: Collection[str] | None = None
) -> ApiRequest:
    path = _path(
        "threads", ("thread_id", thread_id), "runs", ("run_id", run_id), "steps", ("step_id", step_id)
    )
    return ApiRequest("GET", path, tuple(("include[]", value) for value in validate_include(include)))


def list_run_steps_request(
    thread_id: object,
    run_id: object,
    *,
    limit: int = 100,
    order: str = "asc",
    after: str | None = None,
    before: str | None = None,
    include: Collection[str] | None = None,
) -> ApiRequest:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise PortkeyConfigurationError(f"limit must be a whole number from 1 to 100, got {limit!r}")
    if order not in ("asc", "desc"):
        raise PortkeyConfigurationError(f"order must be 'asc' or 'desc', got {order!r}")
    params = [("limit", str(limit)), ("order", order)]
    if after is not None:
        params.append(("after", validate_id("after", after)))
    if before is not None:
        params.append(("before", validate_id("before", before)))
    params += [("include[]", value) for value in validate_include(include)]
    path = _path("threads", ("thread_id", thread_id), "runs", ("run_id", run_id), "steps")
    return ApiRequest("GET", path, tuple(params))


def redact(text: str, secrets: Collection[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def excerpt(body: bytes, secrets: Collection[str] = ()) -> str:
    """A short, printable, secret-free quote of a body for error messages."""
    text = body[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = redact(text, secrets)
    if len(text) > _EXCERPT_CHARS or len(body) > _EXCERPT_CHARS * 4:
        text = text[:_EXCERPT_CHARS] + "..."
    return repr(text)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None


def _api_message(payload: Any) -> str | None:
    """The API's own words, from the upstream ``{"error": {...}}`` or the gateway's ``{"message"}``."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code") or error.get("type")
        if message and code:
            return f"{message} ({code})"
        return str(message or code) if (message or code) else None
    if isinstance(error, str):
        return error
    message = payload.get("message")
    return str(message) if message else None


_NOT_JSON: Any = object()


def _decode(body: bytes) -> Any:
    """The JSON value of ``body``, or ``_NOT_JSON`` (a body of ``null`` is JSON, just not an object)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def error_for_status(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes, secrets: Collection[str] = ()
) -> PortkeyRequestError:
    """The exception for a non-2xx answer, with everything a person needs to act on it."""
    message = _api_message(_decode(body))
    details: dict[str, Any] = {
        "status": status,
        "api_message": redact(message, secrets) if message else None,
        "request_id": headers.get("x-request-id"),
        "trace_id": headers.get("x-portkey-trace-id"),
    }
    if message is None and body:
        details["api_message"] = f"body {excerpt(body, secrets)}"
    if 300 <= status < 400:
        location = redact(headers.get("location") or "<none>", secrets)
        return PortkeyRedirectError(
            request.description, what=f"redirect to {location} refused (keys are never sent on)", **details
        )
    if status == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return PortkeyRateLimitError(
            request.description, what="rate limited", retry_after=retry_after, **details
        )
    if status in _RETRYABLE_STATUSES:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return PortkeyServerError(
            request.description, what="server error or timeout", retry_after=retry_after, **details
        )
    if status in (401, 403):
        return PortkeyAuthError(request.description, what="authentication refused", **details)
    if status == 404:
        return PortkeyNotFoundError(request.description, what="not found", **details)
    if 400 <= status < 500:
        return PortkeyClientError(request.description, what="request refused", **details)
    return PortkeyBadResponseError(request.description, what="unexpected HTTP status", **details)


def interpret_response(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes, secrets: Collection[str] = ()
) -> Any:
    """Return the decoded JSON of a 2xx answer, or raise the matching :class:`PortkeyRequestError`."""
    if not 200 <= status < 300:
        raise error_for_status(request, status, headers, body, secrets)
    payload = _decode(body)
    if payload is _NOT_JSON:
        raise PortkeyBadResponseError(
            request.description,
            what=f"the body is not JSON: {excerpt(body, secrets)}",
            status=status,
            request_id=headers.get("x-request-id"),
            trace_id=headers.get("x-portkey-trace-id"),
        )
    return payload


def connection_error(
    request: ApiRequest, error: BaseException, base_url: str | None = None
) -> PortkeyConnectionError:
    """
    Wrap a transport failure (refused, reset, timeout) without any request detail but the path.

    Only the exception's class name is used: transport messages may quote header values. The base
    URL (validated to carry no credentials) is named, because "which server?" is the first question
    when nothing answers.
    """
    reason = type(error).__name__
    where = f" from {base_url}" if base_url else ""
    return PortkeyConnectionError(request.description, what=f"no usable answer{where} ({reason})")


def parse_run_step(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> RunStep:
    """A run step, or a clear error quoting what came instead."""
    return _parse(request, payload, secrets, lambda data: RunStep.from_api(data))


def parse_run_step_list(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> RunStepList:
    return _parse(request, payload, secrets, RunStepList.model_validate)


def _parse(request: ApiRequest, payload: Any, secrets: Collection[str], parse: Callable[[Any], _T]) -> _T:

    try:
        if not isinstance(payload, dict):
            raise TypeError("not a JSON object")
        return parse(payload)
    except (ValidationError, TypeError) as error:
        problem = (
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()[:3]
            )
            if isinstance(error, ValidationError)
            else str(error)
        )
        quoted = excerpt(json.dumps(payload).encode(), secrets)
        raise PortkeyBadResponseError(
            request.description, what=f"unexpected JSON ({problem}): {quoted}"
        ) from None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, never shorter than a ``Retry-After`` (both capped)."""

    max_retries: int
    max_wait: float
    backoff_base: float = 1.0

    def next_delay(
        self, attempt: int, error: PortkeyRequestError, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or ``None`` when not to retry."""
        if not isinstance(error, PortkeyTransientError) or attempt >= self.max_retries:
            return None
        backoff = rand() * min(self.max_wait, self.backoff_base * 2.0**attempt)
        if error.retry_after is not None:
            backoff = max(backoff, error.retry_after)
        return min(self.max_wait, backoff)
