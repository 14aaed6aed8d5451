"""Every error the provider raises, in one place.

All of them are :class:`AirflowException` subclasses so Airflow reports them as task failures, and
all of them are built from safe parts only: what was asked (method and path with ids), the HTTP
status, the API's own message and the request/trace id. No header value ever reaches a message.
"""

from __future__ import annotations

from airflow_provider_portkey._compat import AirflowException, AirflowFailException


class PortkeyError(AirflowException):
    """Base class of everything this provider raises about Portkey."""


class PortkeyConfigurationError(PortkeyError, ValueError):
    """The Airflow connection or an argument is unusable; raised before any request is sent."""


class InvalidIdError(PortkeyConfigurationError):
    """A thread, run or step id is not a plain API id (for example a template that rendered to None)."""


class PortkeyRequestError(PortkeyError):
    """A request was sent and did not give a usable answer."""

    #: Whether sending the same request again may succeed.
    transient: bool = False
    #: Whether the failure proves the server did nothing with the request (it never got it, or
    #: refused it before processing): only then may a request that creates or changes something
    #: be sent again. ``False`` unless the core knows better.
    nothing_done: bool = False

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
        nothing_done: bool | None = None,
    ) -> None:
        self.description = description
        self.what = what
        self.status = status
        self.api_message = api_message
        self.request_id = request_id
        self.trace_id = trace_id
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after
        if nothing_done is not None:
            self.nothing_done = nothing_done
        parts = [f"{description}: {what}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if api_message:
            parts.append(f"API said: {api_message}")
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
    """Any other 4xx the API will answer the same way again (400, 412 budget, 422, 446 guardrail...)."""


class PortkeyRedirectError(PortkeyRequestError):
    """A 3xx: never followed, because following would hand our keys to another origin."""


class PortkeyBadResponseError(PortkeyRequestError):
    """The body is not JSON, or not the object that was asked for."""


class PortkeyTransientError(PortkeyRequestError):
    """A failure worth retrying: connection trouble, timeouts, 408, 429 and 5xx."""

    transient = True


class PortkeyRateLimitError(PortkeyTransientError):
    """429: Portkey or the upstream provider rate limited us, before doing anything."""

    nothing_done = True


class PortkeyServerError(PortkeyTransientError):
    """408 or 5xx from the gateway or the upstream."""


class PortkeyConnectionError(PortkeyTransientError):
    """
    No HTTP answer at all: refused, reset, timed out or cut short.

    ``nothing_done`` is true only when the connection was never established (refused, connect
    timeout, name resolution): a reset or a read timeout may come after the server acted.
    """


class RunStepUnsuccessfulError(PortkeyError, AirflowFailException):
    """The step ended ``failed``, ``cancelled`` or ``expired``; retrying the task cannot change that."""


class RunUnsuccessfulError(PortkeyError, AirflowFailException):
    """The run ended ``failed``, ``cancelled``, ``expired`` or ``incomplete``; a retry cannot change that."""


class ResponseUnsuccessfulError(PortkeyError, AirflowFailException):
    """The response ended ``failed``, ``cancelled`` or ``incomplete``; a retry cannot change that."""
