"""What the sync and async Portkey hooks share: connection -> settings, masking, retries, UI."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from airflow import __version__ as airflow_version
from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_portkey import __version__
from airflow_provider_portkey.connection_fields import CONN_TYPE, DEFAULT_CONN_NAME
from airflow_provider_portkey.errors import PortkeyConfigurationError, PortkeyRequestError
from airflow_provider_portkey.protocol import ApiRequest
from airflow_provider_portkey.retries import RetryPolicy
from airflow_provider_portkey.settings import PortkeySettings, retry_overrides


def user_agent() -> str:
    return f"airflow-provider-portkey/{__version__} apache-airflow/{airflow_version}"


class PortkeyBaseHook(BaseHook):
    """
    Common ground of :class:`PortkeyHook` and :class:`PortkeyAsyncHook`.

    :param portkey_conn_id: The Airflow connection (type ``portkey``).
    :param max_retries: Overrides the connection's ``max_retries``.
    :param max_retry_wait: Overrides the connection's ``max_retry_wait`` (seconds).
    :param trace_id: ``x-portkey-trace-id`` for every request, unless the connection fixes one.
    :param metadata: ``x-portkey-metadata`` pairs of this caller (e.g. the task's dag and task
        ids, see :mod:`airflow_provider_portkey.tracing`), merged under the connection's metadata.
    """

    conn_name_attr = "portkey_conn_id"
    default_conn_name = DEFAULT_CONN_NAME
    conn_type = CONN_TYPE
    hook_name = "Portkey"

    def __init__(
        self,
        portkey_conn_id: str = default_conn_name,
        *,
        max_retries: int | None = None,
        max_retry_wait: float | None = None,
        trace_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.portkey_conn_id = portkey_conn_id
        # Checked here, not at the first request, so a bad DAG argument fails at parse time.
        self._overrides = retry_overrides(max_retries=max_retries, max_retry_wait=max_retry_wait)
        self.trace_id = trace_id
        self.metadata = dict(metadata or {})
        self.deadline = deadline
        self._settings: PortkeySettings | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(portkey_conn_id={self.portkey_conn_id!r})"

    def _validated_settings(
        self, *, host: str | None, password: str | None, port: int | None, extra: Mapping[str, Any]
    ) -> PortkeySettings:
        """
        Validate a connection and apply the overrides; errors name the Airflow connection.

        The caller registers ``settings.secrets`` for redaction: the sync hook with ``mask_secret``,
        the async one with ``amask_secret`` (the sync call fails on a 3.0 triggerer's event loop).
        """
        return self._with_overrides(
            self._connection_settings(host=host, password=password, port=port, extra=extra)
        )

    def _connection_settings(
        self, *, host: str | None, password: str | None, port: int | None, extra: Mapping[str, Any]
    ) -> PortkeySettings:
        """The connection's settings alone (what hooks on one connection can share)."""
        try:
            return PortkeySettings.from_connection_fields(
                host=host, password=password, port=port, extra=extra
            )
        except PortkeyConfigurationError as error:
            raise PortkeyConfigurationError(f"Airflow connection {self.portkey_conn_id!r}: {error}") from None

    def _with_overrides(self, settings: PortkeySettings) -> PortkeySettings:
        """``settings`` with this hook's ``max_retries``/``max_retry_wait`` (itself when it has none)."""
        return dataclasses.replace(settings, **self._overrides) if self._overrides else settings

    def _headers(self, settings: PortkeySettings, api_request: ApiRequest) -> dict[str, str]:
        """Every header of ``api_request``: the connection's and its own."""
        return settings.headers(
            user_agent(), trace_id=self.trace_id, metadata=self.metadata, request_headers=api_request.headers
        )

    def _wait_before_retry(
        self,
        settings: PortkeySettings,
        api_request: ApiRequest,
        attempt: int,
        error: PortkeyRequestError,
    ) -> float:
        """Seconds to wait before the next attempt; re-raises ``error`` when it is not sent again."""
        policy = RetryPolicy(max_retries=settings.max_retries, max_wait=settings.max_retry_wait)
        decision = policy.decide(api_request, error, attempt, deadline=self.deadline)
        if decision.delay is not None:
            self.log.warning("%s; %s", error, decision.reason)
            return decision.delay
        if decision.kind == "unsafe":
            self.log.warning(
                "%s; not retried: %s. Check its result in Portkey (trace id %s) before running it again.",
                error,
                decision.reason,
                settings.effective_trace_id(self.trace_id) or "not set",
            )
        elif decision.kind == "deadline":
            self.log.warning("%s; not retried: %s", error, decision.reason)
        raise error
