"""Turn an Airflow connection into validated, immutable client settings.

Everything about a connection is checked here, once, before any request: a bad URL, a missing key,
no way to choose an upstream, an unknown extra option or a bad value is a
:class:`PortkeyConfigurationError` that names the field. Secrets are kept out of ``repr``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_portkey.connection_fields import (
    CONN_TYPE,
    DEFAULT_BASE_URL,
    DEFAULT_UI_URL,
    EXTRA_FIELDS,
)
from airflow_provider_portkey.errors import PortkeyConfigurationError

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_MAX_RETRY_WAIT = 60.0
#: Our read timeout outlasts the gateway's own ``x-portkey-request-timeout`` by this much, so the
#: gateway's 408 (which says what timed out) arrives instead of a bare client-side timeout.
GATEWAY_TIMEOUT_MARGIN = 5.0
#: Portkey stores metadata values of at most this many characters (docs: "Metadata").
METADATA_VALUE_MAX = 128

#: Fields whose values are never echoed in an error: keys, configs (may embed keys), free headers.
_SECRET_FIELDS = frozenset({"password", "virtual_key", "provider_api_key", "config", "headers"})
#: An HTTP header name (RFC 9110 token); anything else makes the HTTP client fail mid-request.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_USERINFO = re.compile(r"(?<=//)[^/@]*@")


def _bad(field_name: str, value: object, why: str) -> PortkeyConfigurationError:
    if value is None or value == "":  # nothing to hide: say it is empty
        return PortkeyConfigurationError(f"Portkey connection field {field_name!r} is empty: {why}")
    shown = "<redacted>" if field_name in _SECRET_FIELDS else repr(value)
    return PortkeyConfigurationError(f"Portkey connection field {field_name!r} = {shown}: {why}")


#: The hook options a task may set through ``hook_params`` (its trace id and metadata it sets itself).
HOOK_PARAMS = ("max_retries", "max_retry_wait")


def retry_overrides(
    *, max_retries: object = None, max_retry_wait: object = None, field_prefix: str = ""
) -> dict[str, Any]:
    """
    The hook's ``max_retries``/``max_retry_wait`` that replace the connection's (``None``: keep it).

    Checked where they are given (the hook's constructor, a task's ``hook_params``), so a bad DAG
    argument fails at parse time; ``field_prefix`` says where in the message (``hook_params.``).
    """
    overrides: dict[str, Any] = {}
    if max_retries is not None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise PortkeyConfigurationError(
                f"{field_prefix}max_retries must be a whole number >= 0, got {max_retries!r}"
            )
        overrides["max_retries"] = max_retries
    if max_retry_wait is not None:
        if (
            isinstance(max_retry_wait, bool)
            or not isinstance(max_retry_wait, int | float)
            or not 0 <= max_retry_wait < math.inf
        ):
            raise PortkeyConfigurationError(
                f"{field_prefix}max_retry_wait must be a number of seconds >= 0, got {max_retry_wait!r}"
            )
        overrides["max_retry_wait"] = float(max_retry_wait)
    return overrides


def validate_hook_params(hook_params: object) -> dict[str, Any]:
    """A task's ``hook_params`` (keyword arguments for its hook) as a dict, each one checked."""
    if hook_params is None:
        return {}
    if not isinstance(hook_params, Mapping):
        raise PortkeyConfigurationError(f"hook_params must be a dict, got {hook_params!r}")
    unknown = sorted(map(repr, hook_params.keys() - set(HOOK_PARAMS)))
    if unknown:
        raise PortkeyConfigurationError(
            f"hook_params has unknown option(s) {', '.join(unknown)}; allowed: {', '.join(HOOK_PARAMS)}"
        )
    retry_overrides(**hook_params, field_prefix="hook_params.")
    return dict(hook_params)


def _header_safe(value: str) -> bool:
    """Printable ASCII only: a newline or a non-Latin-1 character would fail inside the HTTP client."""
    return value.isascii() and value.isprintable()


def _is_loopback(hostname: str | None) -> bool:
    if hostname is None:
        return False
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """
    Accept a bare host or a URL with or without ``/v1`` or a trailing slash; return ``.../v1``.

    A bare host gets ``https://``, except a loopback one (a local gateway rarely has TLS).
    """
    if host is None or not host.strip():
        return DEFAULT_BASE_URL
    raw = host.strip()
    shown = _USERINFO.sub("***@", raw)  # never echo a password someone put in the URL
    if any(ch.isspace() for ch in raw):
        raise _bad("host", shown, "contains whitespace")
    try:
        if "://" not in raw:
            scheme = "http" if _is_loopback(urlsplit(f"//{raw}").hostname) else "https"
            raw = f"{scheme}://{raw}"
        parts = urlsplit(raw)
        url_port = parts.port
    except ValueError as error:
        raise _bad("host", shown, f"not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise _bad("host", shown, "the scheme must be http or https")
    if not parts.hostname:
        raise _bad("host", shown, "no host name")
    if parts.username or parts.password:
        raise _bad("host", shown, "credentials do not belong in the URL; put the API key in the password")
    if parts.query or parts.fragment:
        raise _bad("host", shown, "a base URL has no query or fragment")
    if not raw.isascii():
        raise _bad("host", shown, "use the ASCII (punycode) form of the host name")
    netloc = parts.netloc
    if port:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise _bad("port", port, "must be a TCP port from 1 to 65535")
        if url_port is None:
            netloc = f"{netloc}:{port}"
        elif url_port != port:
            raise _bad("port", port, f"disagrees with the port in host ({url_port}); set only one")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        path = f"{path}/v1"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _text(extra: Mapping[str, Any], name: str) -> str | None:
    value = extra.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _bad(name, value, "must be a string")
    if value != value.strip() or not _header_safe(value):
        raise _bad(name, value, "has surrounding whitespace, a control or a non-ASCII character")
    return value


def _number(extra: Mapping[str, Any], name: str, default: float, *, integer: bool = False) -> float:
    value = extra.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _bad(name, value, "must be a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _bad(name, value, "must be a non-negative number")
    if integer and value != int(value):
        raise _bad(name, value, "must be a whole number")
    return float(value)


def _string_map(extra: Mapping[str, Any], name: str) -> dict[str, str]:
    value = extra.get(name)
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _bad(name, value, "must be a JSON object") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _bad(name, value, "must be a JSON object of string values")
    if name == "metadata":
        for key, text in value.items():
            # No character check: the header carries JSON, which escapes anything unsafe.
            if len(text) > METADATA_VALUE_MAX:
                raise _bad(name, value, f"value of {key!r} is longer than {METADATA_VALUE_MAX} characters")
    if name == "headers":
        for header, text in value.items():
            if not _HEADER_NAME.fullmatch(header) or text != text.strip() or not _header_safe(text):
                raise _bad(name, value, f"header {header!r} has a bad name or value (printable ASCII only)")
    return dict(value)


def _config(extra: Mapping[str, Any]) -> str | None:
    value = extra.get("config")
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError as error:
            raise _bad("config", "<JSON config>", f"is not valid JSON ({error.args[0]})") from None
        return json.dumps(parsed, separators=(",", ":"))
    return _text(extra, "config")


def _ui_url(extra: Mapping[str, Any]) -> str:
    """The Portkey app's base URL (no trailing slash), for links people click."""
    value = _text(extra, "ui_url")
    if value is None:
        return DEFAULT_UI_URL
    try:
        parts = urlsplit(value)
    except ValueError as error:
        raise _bad("ui_url", value, f"not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise _bad("ui_url", value, "must be an http(s) URL without credentials")
    return value.rstrip("/")


def _unprefixed(extra: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the UI's ``extra__portkey__name`` keys as well as plain ``name``."""
    prefix = f"extra__{CONN_TYPE}__"
    return {key.removeprefix(prefix): value for key, value in extra.items()}


@dataclass(frozen=True)
class PortkeySettings:
    """Everything needed to talk to Portkey, validated. Secrets are excluded from ``repr``."""

    base_url: str
    api_key: str = field(repr=False)
    virtual_key: str | None = field(default=None, repr=False)
    provider: str | None = None
    provider_api_key: str | None = field(default=None, repr=False)
    config: str | None = field(default=None, repr=False)
    custom_host: str | None = None
    request_timeout: float | None = None
    client_read_timeout: float | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    trace_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    extra_headers: dict[str, str] = field(default_factory=dict, repr=False)
    ui_url: str = DEFAULT_UI_URL

    @classmethod
    def from_connection_fields(
        cls, *, host: str | None, password: str | None, port: int | None, extra: Mapping[str, Any]
    ) -> PortkeySettings:
        """Validate the parts of an Airflow connection (``extra`` already decoded)."""
        options = _unprefixed(extra)
        unknown = sorted(set(options) - set(EXTRA_FIELDS))
        if unknown:
            # The value is not shown: a misspelt option may well hold a key.
            known = ", ".join(EXTRA_FIELDS)
            raise PortkeyConfigurationError(
                f"Portkey connection extra has unknown option {unknown[0]!r}; known: {known}"
            )
        if not password:
            raise _bad("password", None, "the Portkey API key is required (x-portkey-api-key)")
        if password != password.strip() or not _header_safe(password):
            raise _bad("password", password, "has surrounding whitespace, a control or a non-ASCII character")
        settings = cls(
            base_url=normalize_base_url(host, port),
            api_key=password,
            virtual_key=_text(options, "virtual_key"),
            provider=_text(options, "provider"),
            provider_api_key=_text(options, "provider_api_key"),
            config=_config(options),
            # The gateway appends the API path itself: ".../v1/" would become ".../v1//threads".
            custom_host=(_text(options, "custom_host") or "").rstrip("/") or None,
            request_timeout=_number(options, "request_timeout", 0.0) or None,
            client_read_timeout=_number(options, "read_timeout", 0.0) or None,
            connect_timeout=_number(options, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            max_retries=int(_number(options, "max_retries", DEFAULT_MAX_RETRIES, integer=True)),
            max_retry_wait=_number(options, "max_retry_wait", DEFAULT_MAX_RETRY_WAIT),
            trace_id=_text(options, "trace_id"),
            metadata=_string_map(options, "metadata"),
            extra_headers=_string_map(options, "headers"),
            ui_url=_ui_url(options),
        )
        settings._check_routing()
        return settings

    def _check_routing(self) -> None:
        routed_by_header = {name.lower() for name in self.extra_headers} & {
            "x-portkey-virtual-key",
            "x-portkey-provider",
            "x-portkey-config",
        }
        if not (self.virtual_key or self.provider or self.config or routed_by_header):
            raise _bad(
                "extra",
                "<no routing>",
                "Portkey needs a way to choose the upstream: set virtual_key, provider "
                "(with provider_api_key) or config",
            )
        if self.custom_host:
            if not self.provider:
                raise _bad("custom_host", self.custom_host, "needs provider (e.g. openai) as well")
            try:
                parts = urlsplit(self.custom_host)
                parts.port  # noqa: B018  (raises ValueError on a bad port)
            except ValueError as error:
                raise _bad("custom_host", self.custom_host, f"not a valid URL ({error})") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _bad("custom_host", self.custom_host, "must be an http(s) URL")
        if self.provider_api_key and not self.provider:
            raise _bad("provider_api_key", "<redacted>", "needs provider (e.g. openai) as well")

    @property
    def read_timeout(self) -> float:
        """The client's read timeout: explicit, else just longer than the gateway's own timeout."""
        if self.client_read_timeout:
            return self.client_read_timeout
        if self.request_timeout:
            return self.request_timeout + GATEWAY_TIMEOUT_MARGIN
        return DEFAULT_READ_TIMEOUT

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never be shown: keys, a JSON config, and key-like extra headers."""
        candidates = [self.api_key, self.virtual_key, self.provider_api_key]
        if self.config and self.config.startswith("{"):
            candidates.append(self.config)
        candidates += [
            value
            for name, value in self.extra_headers.items()
            if any(word in name.lower() for word in ("key", "auth", "token", "secret", "config"))
        ]
        return tuple(value for value in candidates if value)

    def effective_trace_id(self, trace_id: str | None = None) -> str | None:
        """The trace id requests carry: the connection's fixed one, else the caller's."""
        return self.trace_id or trace_id

    def headers(
        self,
        user_agent: str,
        *,
        trace_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        request_headers: Iterable[tuple[str, str]] = (),
    ) -> dict[str, str]:
        """
        All headers of one request: auth, routing, tracing, the request's own (``request_headers``,
        such as the Assistants API's beta), then the user's free ``headers`` on top.

        ``trace_id`` applies unless the connection fixes one; ``metadata`` (the task's own, such
        as its dag and task ids) is merged under the connection's metadata, whose keys win.
        """
        merged = {**(metadata or {}), **self.metadata}
        headers = {
            "Accept": "application/json",
            "User-Agent": user_agent,
            "x-portkey-api-key": self.api_key,
        }
        optional = {
            "x-portkey-virtual-key": self.virtual_key,
            "x-portkey-provider": self.provider,
            "Authorization": f"Bearer {self.provider_api_key}" if self.provider_api_key else None,
            "x-portkey-config": self.config,
            "x-portkey-custom-host": self.custom_host,
            "x-portkey-request-timeout": (
                str(int(self.request_timeout * 1000)) if self.request_timeout else None
            ),
            "x-portkey-trace-id": self.effective_trace_id(trace_id),
            "x-portkey-metadata": json.dumps(merged, separators=(",", ":")) if merged else None,
        }
        headers.update({name: value for name, value in optional.items() if value is not None})
        headers.update(request_headers)
        headers.update(self.extra_headers)
        return headers
