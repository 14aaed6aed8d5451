"""The request/response core shared by the sync hook and the async trigger.

Plain code with no I/O: it builds requests, validates ids and bodies, interprets responses and
decides retries. The two transports (``requests`` in the hook, ``httpx`` in the trigger) only move
bytes, so the two paths cannot drift apart.

Retrying a POST that creates or changes something (a run, a cancel, tool outputs) is only safe
when the failure proves the server did nothing: otherwise a retry may start a second run. See
:func:`never_connected`, :attr:`ApiRequest.safe_to_repeat` and :meth:`RetryPolicy.next_delay`.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections.abc import Callable, Collection, Mapping, Sequence
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
from airflow_provider_portkey.models import Run, RunStep, RunStepList

_T = TypeVar("_T")

#: The only ``include[]`` value the run-step endpoints accept.
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
INCLUDE_VALUES = frozenset({FILE_SEARCH_CONTENT})

_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Statuses that prove the request was refused before anything was done. 429: Portkey and the
#: upstreams rate limit before processing. 503: Portkey and OpenAI-compatible upstreams answer
#: "unavailable" (overloaded, in maintenance, no healthy target) before accepting work; an
#: assumption about the servers, documented in docs/workflows.md. 408, 500, 502 and 504 may come
#: after the upstream acted (the gateway timed out or lost the answer), so they prove nothing.
_NOTHING_DONE_STATUSES = frozenset({429, 503})
_EXCERPT_CHARS = 200
_QUOTED_ID_CHARS = 80
_RESPONSE_ID_CHARS = 100


def validate_id(name: str, value: object) -> str:
    """Reject what a template can render to by mistake (``None``, ``""``, ``../runs``) before any request."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or value == "None":
        shown = repr(value)
        if len(shown) > _QUOTED_ID_CHARS:  # a runaway template must not make a megabyte error
            shown = f"{shown[:_QUOTED_ID_CHARS]}... ({len(shown)} chars)"
        raise InvalidIdError(
            f"{name} must be a non-empty API id of letters, digits, '_' or '-' (at most 256), got {shown}"
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
    #: Whether sending it twice has the same effect as once; ``None``: decided by the method
    #: (GET and DELETE are, POST is not), so a new POST builder is safe by default.
    idempotent: bool | None = None

    @property
    def description(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def safe_to_repeat(self) -> bool:
        """Whether any transient failure may be retried, or only one that proves nothing was done."""
        return self.idempotent if self.idempotent is not None else self.method != "POST"


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
    params = page_params(limit=limit, order=order, after=after, before=before)
    params += [("include[]", value) for value in validate_include(include)]
    path = _path("threads", ("thread_id", thread_id), "runs", ("run_id", run_id), "steps")
    return ApiRequest("GET", path, tuple(params))


def page_params(
    *, limit: int, order: str, after: str | None = None, before: str | None = None
) -> list[tuple[str, str]]:
    """The cursor-pagination query every list endpoint takes (``limit`` 1-100, ``order``, cursors)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise PortkeyConfigurationError(f"limit must be a whole number from 1 to 100, got {limit!r}")
    if order not in ("asc", "desc"):
        raise PortkeyConfigurationError(f"order must be 'asc' or 'desc', got {order!r}")
    params = [("limit", str(limit)), ("order", order)]
    if after is not None:
        params.append(("after", validate_id("after", after)))
    if before is not None:
        params.append(("before", validate_id("before", before)))
    return params


#: Run-creation body fields that take an API id, checked like path ids.
_RUN_ID_FIELDS = ("assistant_id",)
#: Upstream limits on ``metadata`` (16 pairs, keys up to 64, values up to 512 characters).
_METADATA_MAX_PAIRS, _METADATA_KEY_MAX, _METADATA_VALUE_MAX = 16, 64, 512


def _bad_body(field: str, why: str, value: object = None) -> PortkeyConfigurationError:
    shown = "" if value is None else f", got {_short_repr(value)}"
    return PortkeyConfigurationError(f"{field} {why}{shown}")


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_metadata(field: str, value: object) -> dict[str, str] | None:
    """Metadata as the API accepts it: at most 16 string pairs, keys <= 64 and values <= 512 chars."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _bad_body(field, "must be a mapping of strings to strings", value)
    if len(value) > _METADATA_MAX_PAIRS:
        raise _bad_body(field, f"has {len(value)} pairs; the API accepts at most {_METADATA_MAX_PAIRS}")
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= _METADATA_KEY_MAX:
            raise _bad_body(field, f"keys must be strings of 1 to {_METADATA_KEY_MAX} characters", key)
        if not isinstance(item, str) or len(item) > _METADATA_VALUE_MAX:
            raise _bad_body(
                f"{field}[{key!r}]", f"must be a string of at most {_METADATA_VALUE_MAX} characters", item
            )
    return dict(value)


def _validate_messages(field: str, value: object) -> list[Any] | None:
    """Messages as the API accepts them: ``role`` user or assistant, ``content`` text or parts."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise _bad_body(field, "must be a list of messages", value)
    for index, message in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(message, Mapping):
            raise _bad_body(where, "must be a mapping with role and content", message)
        if message.get("role") not in ("user", "assistant"):
            raise _bad_body(f"{where}.role", "must be 'user' or 'assistant'", message.get("role"))
        content = message.get("content")
        if not isinstance(content, str | list) or not content:
            raise _bad_body(f"{where}.content", "must be a non-empty string or list of parts", content)
    return list(value)


def _json_body(field: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` that is plain JSON (no ``None`` keys, no objects), or a clear error."""
    try:
        encoded = json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise _bad_body(field, f"must be plain JSON ({error})") from None
    result: dict[str, Any] = json.loads(encoded)
    return result


def run_body(
    assistant_id: object,
    *,
    thread: Mapping[str, Any] | None = None,
    additional_messages: Sequence[Mapping[str, Any]] | None = None,
    metadata: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """
    The JSON body of a run-creating POST, checked before anything is sent.

    ``options`` holds the other API fields (``model``, ``instructions``, ``tools``, ...) as the
    API names them; ``None`` values are left out so that templated, unset options change nothing.
    Streaming is refused: the hook reads one JSON answer.
    """
    body: dict[str, Any] = {name: value for name, value in (options or {}).items() if value is not None}
    for reserved in ("assistant_id", "thread", "additional_messages", "metadata"):
        if reserved in body:
            raise _bad_body(f"options[{reserved!r}]", "is an argument of its own; pass it by name")
    if body.get("stream"):
        raise _bad_body("stream", "is not supported: the run is created, then waited on with RunSensor")
    body["assistant_id"] = validate_id("assistant_id", assistant_id)
    if thread is not None:
        if not isinstance(thread, Mapping):
            raise _bad_body("thread", "must be a mapping (messages, metadata, tool_resources)", thread)
        _validate_messages("thread.messages", thread.get("messages"))
        validate_metadata("thread.metadata", thread.get("metadata"))
        body["thread"] = dict(thread)
    if additional_messages is not None:
        body["additional_messages"] = _validate_messages("additional_messages", additional_messages)
    if metadata is not None:
        body["metadata"] = validate_metadata("metadata", metadata)
    return _json_body("the run body", body)


def _run_path(thread_id: object, run_id: object, *rest: str) -> str:
    return _path("threads", ("thread_id", thread_id), "runs", ("run_id", run_id), *rest)


def create_thread_and_run_request(body: Mapping[str, Any]) -> ApiRequest:
    """``POST /threads/runs``: a new thread and a run on it (``body`` from :func:`run_body`)."""
    if "additional_messages" in body:
        raise _bad_body("additional_messages", "belongs to a run on an existing thread; use thread.messages")
    return ApiRequest("POST", "/threads/runs", body=body)


def create_run_request(thread_id: object, body: Mapping[str, Any]) -> ApiRequest:
    """``POST /threads/{thread_id}/runs`` (``body`` from :func:`run_body`)."""
    if "thread" in body:
        raise _bad_body(
            "thread", "belongs to a new thread; a run on an existing one takes additional_messages"
        )
    return ApiRequest("POST", _path("threads", ("thread_id", thread_id), "runs"), body=body)


def get_run_request(thread_id: object, run_id: object) -> ApiRequest:
    return ApiRequest("GET", _run_path(thread_id, run_id))


def cancel_run_request(thread_id: object, run_id: object) -> ApiRequest:
    """
    ``POST .../cancel``. Not marked idempotent: a second cancel of a run that is already
    ``cancelling`` is a 400, so a blind retry would turn a success into an error.
    """
    return ApiRequest("POST", _run_path(thread_id, run_id, "cancel"))


def validate_tool_outputs(tool_outputs: object) -> list[dict[str, str]]:
    """
    Tool outputs as the API takes them: ``[{"tool_call_id": ..., "output": "..."}]``.

    A mapping ``{tool_call_id: output}`` is accepted too (what a Python task naturally returns).
    Outputs must be strings (``json.dumps`` structured results); ids must be API ids and unique.
    """
    if isinstance(tool_outputs, Mapping):
        items: list[Any] = [{"tool_call_id": key, "output": value} for key, value in tool_outputs.items()]
    elif isinstance(tool_outputs, Sequence) and not isinstance(tool_outputs, str | bytes):
        items = list(tool_outputs)
    else:
        raise _bad_body(
            "tool_outputs",
            "must be a list of {tool_call_id, output} or a mapping of id to output",
            tool_outputs,
        )
    if not items:
        raise _bad_body("tool_outputs", "must not be empty: a run waits for every tool call it listed")
    outputs: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"tool_outputs[{index}]"
        if not isinstance(item, Mapping):
            raise _bad_body(where, "must be a mapping with tool_call_id and output", item)
        unknown = sorted(set(item) - {"tool_call_id", "output"})
        if unknown:
            raise _bad_body(where, f"has unknown field {unknown[0]!r}; only tool_call_id and output are sent")
        call_id = validate_id(f"{where}.tool_call_id", item.get("tool_call_id"))
        if call_id in seen:
            raise _bad_body(f"{where}.tool_call_id", f"repeats {call_id!r}; give each call one output")
        seen.add(call_id)
        output = item.get("output")
        if not isinstance(output, str):
            raise _bad_body(f"{where}.output", "must be a string (json.dumps a structured result)", output)
        outputs.append({"tool_call_id": call_id, "output": output})
    return outputs


def submit_tool_outputs_request(thread_id: object, run_id: object, tool_outputs: object) -> ApiRequest:
    """``POST .../submit_tool_outputs`` with validated outputs."""
    body = {"tool_outputs": validate_tool_outputs(tool_outputs)}
    return ApiRequest("POST", _run_path(thread_id, run_id, "submit_tool_outputs"), body=body)


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
    return max(0.0, seconds) if math.isfinite(seconds) else None


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
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return _NOT_JSON


def response_id(headers: Mapping[str, str], name: str, secrets: Collection[str]) -> str | None:
    """A request/trace id header, fit to quote: short, printable, and never echoing a secret."""
    value = headers.get(name)
    if not value:
        return None
    value = redact("".join(ch for ch in value if ch.isprintable()), secrets)
    return value[:_RESPONSE_ID_CHARS]


def error_for_status(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes, secrets: Collection[str] = ()
) -> PortkeyRequestError:
    """The exception for a non-2xx answer, with everything a person needs to act on it."""
    message = _api_message(_decode(body))
    details: dict[str, Any] = {
        "status": status,
        "api_message": redact(message, secrets) if message else None,
        "request_id": response_id(headers, "x-request-id", secrets),
        "trace_id": response_id(headers, "x-portkey-trace-id", secrets),
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
            request.description,
            what="server error or timeout",
            retry_after=retry_after,
            nothing_done=status in _NOTHING_DONE_STATUSES,
            **details,
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
            request_id=response_id(headers, "x-request-id", secrets),
            trace_id=response_id(headers, "x-portkey-trace-id", secrets),
        )
    return payload


@functools.cache
def _never_connected_types() -> tuple[type[BaseException], ...]:
    """
    Transport failures raised before a connection existed, so before any byte of the request left:
    refused, unreachable, name not resolved, connect timeout (urllib3 under ``requests``), and
    httpx's connect errors and pool timeout (no connection became free to send on).

    Imported on first failure, not with this module: DAG files import the sensors, which import this.
    """
    import httpx
    import requests
    import urllib3.exceptions

    return (
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.ConnectTimeoutError,
        requests.exceptions.ConnectTimeout,
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
    )


def never_connected(error: BaseException) -> bool:
    """
    Whether a transport failure proves the request never reached the server.

    True only for a connection that was never established. A reset, an aborted or half-read
    answer, a read or write timeout may all come after the server got (and acted on) the request.
    ``requests`` nests urllib3's error (``ConnectionError(MaxRetryError(reason=...))``), so the
    causes, ``reason`` attributes and first arguments are followed.
    """
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _never_connected_types()):
            return True
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        if current.args:
            pending.append(current.args[0])
    return False


def connection_error(
    request: ApiRequest, error: BaseException, base_url: str | None = None
) -> PortkeyConnectionError:
    """
    Wrap a transport failure (refused, reset, timeout) without any request detail but the path.

    Only the exception's class name is used: transport messages may quote header values. The base
    URL (validated to carry no credentials) is named, because "which server?" is the first question
    when nothing answers. Whether the request can have reached the server is kept in
    ``nothing_done`` for the retry decision.
    """
    reason = type(error).__name__
    where = f" from {base_url}" if base_url else ""
    unsent = never_connected(error)
    what = f"no usable answer{where} ({reason}{'; never connected' if unsent else ''})"
    return PortkeyConnectionError(request.description, what=what, nothing_done=unsent)


def parse_run_step(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> RunStep:
    """A run step, or a clear error quoting what came instead."""
    return _parse(request, payload, secrets, lambda data: RunStep.from_api(data))


def parse_run(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> Run:
    """A run, or a clear error quoting what came instead."""
    return _parse(request, payload, secrets, lambda data: Run.from_api(data))


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
        self,
        attempt: int,
        error: PortkeyRequestError,
        rand: Callable[[], float] = random.random,
        *,
        request: ApiRequest | None = None,
    ) -> float | None:
        """
        Seconds to wait before retry number ``attempt + 1``, or ``None`` when not to retry.

        A ``request`` that is not safe to repeat (a POST that creates or changes something) is
        retried only after a failure that proves nothing was done (see :func:`blocks_repeat`).
        """
        if not isinstance(error, PortkeyTransientError) or attempt >= self.max_retries:
            return None
        if request is not None and blocks_repeat(request, error):
            return None
        backoff = rand() * min(self.max_wait, self.backoff_base * 2.0**attempt)
        if error.retry_after is not None:
            backoff = max(backoff, error.retry_after)
        return min(self.max_wait, backoff)


def blocks_repeat(request: ApiRequest, error: PortkeyRequestError) -> bool:
    """
    Whether sending ``request`` again after ``error`` could repeat what the server already did.

    True for a request that is not safe to repeat unless the failure proves nothing was done:
    a connection never established, 429, or 503 (see ``_NOTHING_DONE_STATUSES``).
    """
    return not request.safe_to_repeat and not error.nothing_done
