"""The API protocol: what to send, and what an answer (or its absence) means.

Plain code with no I/O, shared by the sync hook and the async trigger: it builds requests,
validates ids and bodies, turns answers into JSON or the matching error (keeping the API's code,
type, param and a body excerpt), and describes transport failures by their real cause. The two
transports (``requests`` in the hook, ``httpx`` in the trigger) only move bytes, so the two paths
cannot drift apart. Whether to send a failed request again is decided in
:mod:`airflow_provider_portkey.retries`, from the facts recorded here.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import socket
import ssl
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
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
    PortkeyGuardrailError,
    PortkeyLimitExhaustedError,
    PortkeyNotFoundError,
    PortkeyRateLimitError,
    PortkeyRedirectError,
    PortkeyRequestError,
    PortkeyServerError,
)
from airflow_provider_portkey.models import Run, RunStep, RunStepList, error_path

_T = TypeVar("_T")

#: The only ``include[]`` value the run-step endpoints accept.
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
INCLUDE_VALUES = frozenset({FILE_SEARCH_CONTENT})

_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Answers that may differ if asked again: 408 (Portkey's or the provider's timeout), 429 (rate
#: limited, unless the code says the quota is spent) and the 5xx a gateway or upstream sends when
#: it is overloaded or restarting. Every other 4xx is answered the same way again.
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: A 429 with one of these ``error.code``/``error.type`` is a spent quota, not a rate limit.
_QUOTA_CODES = frozenset({"insufficient_quota"})
_EXCERPT_CHARS = 200
_QUOTED_ID_CHARS = 80
_RESPONSE_ID_CHARS = 100


#: What a template that found nothing renders to, and the hint that goes with it.
_NOTHING_RENDERED = (
    "a template renders this when it finds nothing, e.g. ti.xcom_pull() from a task that pushed "
    "no such XCom (check the upstream task id, that it ran first, and the key)"
)


def validate_id(name: str, value: object) -> str:
    """Reject what a template can render to by mistake (``None``, ``""``, ``../runs``) before any request."""
    if isinstance(value, str) and _ID.fullmatch(value) and value != "None":
        return value
    if value is None or value in ("None", ""):
        got = "None" if value is None else repr(value)
        raise InvalidIdError(f"{name} is {got}, not an API id: {_NOTHING_RENDERED}")
    shown = repr(value)
    if len(shown) > _QUOTED_ID_CHARS:  # a runaway template must not make a megabyte error
        shown = f"{shown[:_QUOTED_ID_CHARS]}... ({len(shown)} chars)"
    raise InvalidIdError(f"{name} must be an API id: 1 to 256 letters, digits, '_' or '-'; got {shown}")


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
    #: Headers of this request alone, sent with the connection's (which the user's free
    #: ``headers`` still override): the Assistants API's beta, see :func:`assistants_request`.
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def description(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def safe_to_repeat(self) -> bool:
        """Whether any transient failure may be retried, or only one that proves nothing was done."""
        return self.idempotent if self.idempotent is not None else self.method != "POST"


#: The Assistants API (threads, runs, steps, messages) answers 400 ``invalid_beta`` without it; the
#: other endpoints (the Responses API) need no beta and ignore one they do not know.
ASSISTANTS_BETA = (("OpenAI-Beta", "assistants=v2"),)


def assistants_request(
    method: Literal["GET", "POST", "DELETE"],
    path: str,
    params: tuple[tuple[str, str], ...] = (),
    body: Mapping[str, Any] | None = None,
) -> ApiRequest:
    """A request to the Assistants API: every builder of one goes through here, for its beta header."""
    return ApiRequest(method, path, params, body, headers=ASSISTANTS_BETA)


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
    return assistants_request("GET", path, tuple(("include[]", value) for value in validate_include(include)))


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
    return assistants_request("GET", path, tuple(params))


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
    return assistants_request("POST", "/threads/runs", body=body)


def create_run_request(thread_id: object, body: Mapping[str, Any]) -> ApiRequest:
    """``POST /threads/{thread_id}/runs`` (``body`` from :func:`run_body`)."""
    if "thread" in body:
        raise _bad_body(
            "thread", "belongs to a new thread; a run on an existing one takes additional_messages"
        )
    return assistants_request("POST", _path("threads", ("thread_id", thread_id), "runs"), body=body)


def get_run_request(thread_id: object, run_id: object) -> ApiRequest:
    return assistants_request("GET", _run_path(thread_id, run_id))


def cancel_run_request(thread_id: object, run_id: object) -> ApiRequest:
    """
    ``POST .../cancel``. Not marked idempotent: a second cancel of a run that is already
    ``cancelling`` is a 400, so a blind retry would turn a success into an error.
    """
    return assistants_request("POST", _run_path(thread_id, run_id, "cancel"))


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
    return assistants_request("POST", _run_path(thread_id, run_id, "submit_tool_outputs"), body=body)


#: Portkey's feedback scale: ``value`` is a whole number in this range, ``weight`` in 0..1.
FEEDBACK_VALUE_RANGE = (-10, 10)


def feedback_request(
    trace_id: object,
    value: object,
    *,
    weight: object = None,
    metadata: Mapping[str, str] | None = None,
) -> ApiRequest:
    """
    ``POST /feedback``: Portkey's feedback on a trace (hosted Portkey; the open-source gateway has none).

    ``value`` is a whole number from -10 to 10, ``weight`` (optional, Portkey's default 1.0) from
    0 to 1, ``metadata`` string pairs (``_user`` and friends are indexed by Portkey).
    """
    if not isinstance(trace_id, str) or not trace_id.strip() or not trace_id.isprintable():
        raise _bad_body("trace_id", "must be a non-empty, printable string", trace_id)
    low, high = FEEDBACK_VALUE_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad_body("value", f"must be a whole number from {low} to {high}", value)
    body: dict[str, Any] = {"trace_id": trace_id, "value": value}
    if weight is not None:
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise _bad_body("weight", "must be a number from 0 to 1", weight)
        body["weight"] = float(weight)
    if metadata is not None:
        if not isinstance(metadata, Mapping) or not all(
            isinstance(key, str) and isinstance(item, str) for key, item in metadata.items()
        ):
            raise _bad_body("metadata", "must be a mapping of strings to strings", metadata)
        body["metadata"] = dict(metadata)
    return ApiRequest("POST", "/feedback", body=body)


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


@dataclass(frozen=True)
class ApiErrorDetail:
    """What an error body says: the upstream's ``{"error": {...}}`` or the gateway's ``{"message"}``."""

    message: str | None = None
    code: str | None = None
    type: str | None = None
    param: str | None = None
    #: Portkey's guardrail verdicts (a 446 answer), as sent.
    hook_results: Any = None

    @classmethod
    def from_payload(cls, payload: Any) -> ApiErrorDetail:
        if not isinstance(payload, dict):
            return cls()
        error = payload.get("error")
        fields = error if isinstance(error, dict) else {}
        message = (
            fields.get("message") or payload.get("message") or (error if isinstance(error, str) else None)
        )
        return cls(
            message=_text_or_none(message),
            code=_text_or_none(fields.get("code")),
            type=_text_or_none(fields.get("type")),
            param=_text_or_none(fields.get("param")),
            hook_results=payload.get("hook_results"),
        )


def _text_or_none(value: object) -> str | None:
    """A field of an error body as short text; ``None`` for null or empty."""
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


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


#: At most this many failed guardrail hooks are named in a message (all are in ``hook_results``).
_GUARDRAILS_NAMED = 5


def _failed_guardrails(hook_results: Any) -> str:
    """``hook_id (check, check)`` for each hook whose verdict was false, for a 446 message."""
    if not isinstance(hook_results, dict):
        return "no hook_results in the answer"
    failed = []
    for stage in ("before_request_hooks", "after_request_hooks"):
        hooks = hook_results.get(stage)
        for hook in hooks if isinstance(hooks, list) else ():
            if not isinstance(hook, dict) or hook.get("verdict") is not False:
                continue
            checks = hook.get("checks")
            names = [
                str(check.get("id"))
                for check in (checks if isinstance(checks, list) else ())
                if isinstance(check, dict) and check.get("verdict") is False
            ]
            failed.append(f"{hook.get('id', '?')}" + (f" ({', '.join(names)})" if names else ""))
    if not failed:
        return "see hook_results"
    more = f" and {len(failed) - _GUARDRAILS_NAMED} more" if len(failed) > _GUARDRAILS_NAMED else ""
    return "failed: " + "; ".join(failed[:_GUARDRAILS_NAMED]) + more


def _redacted_json(value: Any, secrets: Collection[str]) -> Any:
    """``value`` with every secret replaced, keeping it JSON (keys never reach an exception)."""
    if value is None or not any(secrets):
        return value
    return json.loads(redact(json.dumps(value), secrets))


def error_for_status(
    request: ApiRequest, status: int, headers: Mapping[str, str], body: bytes, secrets: Collection[str] = ()
) -> PortkeyRequestError:
    """
    The exception for a non-2xx answer, with everything a person needs to act on it.

    Portkey's own statuses (its "Errors" page): 408 timed out (retried), 412 budget exhausted and
    446 guardrail denied (never retried: asking again gets the same answer), 429 rate limited
    (retried, unless the body says the quota is spent: OpenAI's ``insufficient_quota``).
    """
    detail = ApiErrorDetail.from_payload(_decode(body))
    message = detail.message
    details: dict[str, Any] = {
        "status": status,
        "api_message": redact(message, secrets) if message else None,
        "request_id": response_id(headers, "x-request-id", secrets),
        "trace_id": response_id(headers, "x-portkey-trace-id", secrets),
        "code": redact(detail.code, secrets) if detail.code else None,
        "error_type": redact(detail.type, secrets) if detail.type else None,
        "param": redact(detail.param, secrets) if detail.param else None,
        "body": excerpt(body, secrets) if body else None,
    }
    if message is None and body:
        details["api_message"] = f"body {details['body']}"
    retry_after = parse_retry_after(headers.get("retry-after"))
    if 300 <= status < 400:
        location = redact(headers.get("location") or "<none>", secrets)
        return PortkeyRedirectError(
            request.description, what=f"redirect to {location} refused (keys are never sent on)", **details
        )
    if status == 412 or (status == 429 and {detail.code, detail.type} & _QUOTA_CODES):
        limit = "budget exhausted" if status == 412 else "quota exhausted"
        return PortkeyLimitExhaustedError(
            request.description,
            what=f"{limit}: not a rate limit, waiting does not help; raise the limit or add credit",
            **details,
        )
    if status == 446:
        return PortkeyGuardrailError(
            request.description,
            what=f"a Portkey guardrail denied the request ({_failed_guardrails(detail.hook_results)})",
            hook_results=_redacted_json(detail.hook_results, secrets),
            **details,
        )
    if status == 429:
        return PortkeyRateLimitError(
            request.description, what="rate limited", retry_after=retry_after, **details
        )
    if status in _TRANSIENT_STATUSES:
        what = "timed out (Portkey or the provider)" if status == 408 else "server error"
        return PortkeyServerError(request.description, what=what, retry_after=retry_after, **details)
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
def _never_sent_types() -> tuple[type[BaseException], ...]:
    """
    Transport failures raised before a connection existed, so before any byte of the request left:
    refused, unreachable, name not resolved, connect timeout (urllib3 under ``requests``), and
    httpx's connect errors (TCP or TLS handshake) and pool timeout (no connection became free).

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
        # A certificate is only ever verified in the handshake, before the request is sent.
        ssl.SSLCertVerificationError,
    )


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it wraps: ``requests`` nests urllib3's errors in ``reason`` and ``args[0]``."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        if current.args:
            pending.append(current.args[0])


def never_connected(error: BaseException) -> bool:
    """
    Whether a transport failure proves the request never reached the server.

    True only for a connection that was never established. A reset, an aborted or half-read
    answer, a read or write timeout may all come after the server got (and acted on) the request.
    """
    return any(isinstance(current, _never_sent_types()) for current in _chain(error))


def _cause(error: BaseException) -> tuple[str, bool]:
    """
    The transport's own reason for a failure, and whether it happened before any server answered.

    Built only from OS and TLS error codes and texts ("Connection refused", "Name or service not
    known", "CERTIFICATE_VERIFY_FAILED"), never from the exception messages, which may quote a URL
    or header.
    """
    import httpx
    import requests
    import urllib3.exceptions

    chain = list(_chain(error))
    for current in chain:
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {current.verify_message or current.reason}", True
    for current in chain:
        if isinstance(current, ssl.SSLError):
            return f"TLS failed: {current.reason or 'handshake error'}", True
        if isinstance(current, socket.gaierror):
            return f"host name not resolved: {current.strerror or 'unknown host'}", True
    for current in chain:  # first: urllib3's NewConnectionError is a ConnectTimeoutError too
        if isinstance(current, OSError) and isinstance(current.errno, int) and current.errno > 0:
            refused = isinstance(current, ConnectionRefusedError) or never_connected(error)
            return os.strerror(current.errno), refused
    for current in chain:
        if isinstance(
            current, urllib3.exceptions.ConnectTimeoutError | requests.ConnectTimeout | httpx.ConnectTimeout
        ):
            return "connect timed out", True
        if isinstance(current, httpx.PoolTimeout):
            return "no free connection in the pool", False
        if isinstance(
            current, urllib3.exceptions.ReadTimeoutError | requests.ReadTimeout | httpx.ReadTimeout
        ):
            return "read timed out", False
    return "connection broken or answer cut short", False


def connection_error(
    request: ApiRequest, error: BaseException, base_url: str | None = None, conn_id: str | None = None
) -> PortkeyConnectionError:
    """
    Wrap a transport failure (refused, name not resolved, TLS, reset, timeout) with its real cause.

    The base URL (validated to carry no credentials) and the Airflow connection are named, because
    "which server?" is the first question when nothing answers. What the failure proves is kept
    for the retry decision and the sensor's first look: ``never_sent`` and ``reached_server``.
    """
    cause, before_any_server = _cause(error)
    unsent = never_connected(error)
    where = f" from {base_url}" if base_url else ""
    connection = f" (Airflow connection {conn_id!r})" if conn_id else ""
    what = f"no usable answer{where}{connection}: {type(error).__name__}: {cause}"
    if unsent:
        what += "; never connected"
    return PortkeyConnectionError(
        request.description,
        what=what,
        cause=cause,
        never_sent=unsent,
        reached_server=not (unsent or before_any_server),
    )


def parse_run_step(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> RunStep:
    """A run step, or a clear error quoting what came instead."""
    return _parse(request, payload, secrets, lambda data: RunStep.from_api(data))


def parse_run(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> Run:
    """A run, or a clear error quoting what came instead."""
    return _parse(request, payload, secrets, lambda data: Run.from_api(data))


def parse_feedback(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> dict[str, Any]:
    """Portkey's answer to a feedback (``status``, ``message``, ``feedback_ids``), as sent."""
    return _parse(request, payload, secrets, dict)


def parse_run_step_list(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> RunStepList:
    return _parse(request, payload, secrets, RunStepList.model_validate)


def next_page_after(request: ApiRequest, page: RunStepList, after: str | None) -> str | None:
    """
    The ``after`` of the page that follows ``page`` (the id of its last item), or ``None`` after the
    last page, as the official SDK pages every list: until ``has_more`` is false or, from a server
    that leaves ``has_more`` out, a page comes back empty.
    """
    if page.has_more is False or not page.data:
        return None
    cursor = page.data[-1].get("id")
    if not isinstance(cursor, str) or cursor == after:  # the same page again would loop forever
        what = f"has_more is not false but the cursor stays at {after!r} (is after= ignored?)"
        raise PortkeyBadResponseError(request.description, what=what)
    return cursor


def _parse(request: ApiRequest, payload: Any, secrets: Collection[str], parse: Callable[[Any], _T]) -> _T:

    try:
        if not isinstance(payload, dict):
            raise TypeError("not a JSON object")
        return parse(payload)
    except (ValidationError, TypeError) as error:
        problem = (
            "; ".join(f"{error_path(e['loc'])}: {e['msg']}" for e in error.errors()[:3])
            if isinstance(error, ValidationError)
            else str(error)
        )
        quoted = excerpt(json.dumps(payload).encode(), secrets)
        raise PortkeyBadResponseError(
            request.description, what=f"unexpected JSON ({problem}): {quoted}"
        ) from None
