"""Every error the provider raises, in one place.

All of them are :class:`AirflowException` subclasses so Airflow reports them as task failures, and
all of them are built from safe parts only: what was asked (method and path with ids), the HTTP
status, the API's own message and the request/trace id. No header value ever reaches a message.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class PortkeyError(AirflowException):
    """Base class of everything this provider raises about Portkey."""


class PortkeyConfigurationError(PortkeyError, ValueError):
    """The Airflow connection or an argument is unusable; raised before any request is sent."""


class InvalidIdError(PortkeyConfigurationError):
    """A thread, run or step id is not a plain API id (for example a template that rendered to None)."""


class PortkeyRequestError(PortkeyError):
    """A request was sent and did not give a usable answer."""

    #: Whether sending the same request again may succeed (whether it *is* sent again is decided
    #: in :mod:`airflow_provider_portkey.retries`).
    transient: bool = False

    def __init__(
        self,
        description: str,
        *,
        what: str,
        status: int | None = None,
        api_message: str | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        body: str | None = None,
    ) -> None:
        self.description = description
        self.what = what
        self.status = status
        self.api_message = api_message
        self.request_id = request_id
        self.trace_id = trace_id
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after
        #: The API's ``error.code``, ``error.type`` and ``error.param``, as sent (secrets redacted).
        self.code = code
        self.error_type = error_type
        self.param = param
        #: A bounded, printable, secret-free excerpt of the error body (``None`` for an empty one).
        self.body = body
        parts = [f"{description}: {what}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if api_message:
            parts.append(f"API said: {api_message}")
        detail = ", ".join(
            f"{name} {value}"
            for name, value in (("code", code), ("type", error_type), ("param", param))
            if value
        )
        if detail:
            parts.append(detail)
        if request_id:
            parts.append(f"request id {request_id}")
        if trace_id:
            parts.append(f"Portkey trace id {trace_id}")
        super().__init__("; ".join(parts))


class PortkeyAuthError(PortkeyRequestError):
    """401/403: the API key, virtual key or provider key was refused."""


class PortkeyNotFoundError(PortkeyRequestError):
    """404: the thread, run or step does not exist (or is not visible with these keys)."""


class PortkeyClientError(PortkeyRequestError):
    """Any other 4xx the API will answer the same way again (400, 409, 422, ...)."""


class PortkeyLimitExhaustedError(PortkeyClientError):
    """
    412 (a Portkey or provider budget is spent) or 429 ``insufficient_quota`` (no credit left).

    Not a rate limit: waiting does not lift it, someone has to raise the limit, so nothing retries
    it and a sensor fails at once instead of waiting until its timeout.
    """


class PortkeyGuardrailError(PortkeyClientError):
    """446: a Portkey guardrail denied the request; :attr:`hook_results` says which checks failed."""

    def __init__(self, description: str, *, hook_results: object = None, **details: Any) -> None:
        #: The ``hook_results`` object of the answer (secrets redacted), ``None`` if it had none.
        self.hook_results = hook_results
        super().__init__(description, **details)


class PortkeyRedirectError(PortkeyRequestError):
    """A 3xx: never followed, because following would hand our keys to another origin."""


class PortkeyBadResponseError(PortkeyRequestError):
    """The body is not JSON, or not the object that was asked for."""


class PortkeyTransientError(PortkeyRequestError):
    """A failure worth retrying: connection trouble, timeouts, 408, 429 and 5xx."""

    transient = True


class PortkeyRateLimitError(PortkeyTransientError):
    """429 (but ``insufficient_quota``): Portkey or the upstream rate limited us, before doing anything."""


class PortkeyServerError(PortkeyTransientError):
    """408 or 5xx from the gateway or the upstream."""


class PortkeyConnectionError(PortkeyTransientError):
    """No HTTP answer at all: refused, name not resolved, TLS refused, reset, timed out or cut short."""

    def __init__(
        self, description: str, *, cause: str, never_sent: bool, reached_server: bool, **details: Any
    ) -> None:
        #: What went wrong in the transport's own words ("Connection refused", "read timed out").
        self.cause = cause
        #: Proven: no byte of the request left this machine (never connected).
        self.never_sent = never_sent
        #: Whether a server was reached at all (TCP and TLS done). ``False`` on the first look of a
        #: wait points at the connection's host, port or TLS settings rather than at an outage.
        self.reached_server = reached_server
        super().__init__(description, **details)


class RunStepUnsuccessfulError(PortkeyError, AirflowFailException):
    """The step ended ``failed``, ``cancelled`` or ``expired``; retrying the task cannot change that."""


class RunUnsuccessfulError(PortkeyError, AirflowFailException):
    """The run ended ``failed``, ``cancelled``, ``expired`` or ``incomplete``; a retry cannot change that."""


class ResponseUnsuccessfulError(PortkeyError, AirflowFailException):
    """The response ended ``failed``, ``cancelled`` or ``incomplete``; a retry cannot change that."""
