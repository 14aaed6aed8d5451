"""What the sync and async Portkey hooks share: connection -> settings, masking, retries, UI."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Mapping
from typing import Any

from airflow_provider_portkey import __version__
from airflow_provider_portkey._compat import BaseHook
from airflow_provider_portkey.connection_fields import CONN_TYPE
from airflow_provider_portkey.core import ApiRequest, RetryPolicy, blocks_repeat
from airflow_provider_portkey.errors import PortkeyConfigurationError, PortkeyRequestError
from airflow_provider_portkey.settings import PortkeySettings


def user_agent() -> str:
    from airflow import __version__ as airflow_version

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
    default_conn_name = "portkey_default"
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
    ) -> None:
        super().__init__()
        # Checked here, not at the first request, so a bad DAG argument fails at parse time.
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise PortkeyConfigurationError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        if max_retry_wait is not None and (
            isinstance(max_retry_wait, bool)
            or not isinstance(max_retry_wait, int | float)
            or not 0 <= max_retry_wait < float("inf")
        ):
            raise PortkeyConfigurationError(
                f"max_retry_wait must be a number of seconds >= 0, got {max_retry_wait!r}"
            )
        self.portkey_conn_id = portkey_conn_id
        self._overrides: dict[str, Any] = {}
        if max_retries is not None:
            self._overrides["max_retries"] = max_retries
        if max_retry_wait is not None:
            self._overrides["max_retry_wait"] = float(max_retry_wait)
        self.trace_id = trace_id
        self.metadata = dict(metadata or {})
        self._settings: PortkeySettings | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(portkey_conn_id={self.portkey_conn_id!r})"

    def _validated_settings(
        self, *, host: str | None, password: str | None, port: int | None, extra: Mapping[str, Any]
    ) -> PortkeySettings:
        """
        Validate a connection and apply the overrides.

        The caller registers ``settings.secrets`` for redaction: the sync hook with ``mask_secret``,
        the async one with ``amask_secret`` (the sync call fails on a 3.0 triggerer's event loop).
        """
        settings = PortkeySettings.from_connection_fields(
            host=host, password=password, port=port, extra=extra
        )
        if self._overrides:
            settings = dataclasses.replace(settings, **self._overrides)
        return settings

    def _headers(self, settings: PortkeySettings) -> dict[str, str]:
        return settings.headers(user_agent(), trace_id=self.trace_id, metadata=self.metadata)

    @staticmethod
    def _retry_policy(settings: PortkeySettings) -> RetryPolicy:
        return RetryPolicy(max_retries=settings.max_retries, max_wait=settings.max_retry_wait)

    def _wait_before_retry(
        self,
        settings: PortkeySettings,
        api_request: ApiRequest,
        attempt: int,
        error: PortkeyRequestError,
    ) -> float:
        """Seconds to wait before the next attempt; re-raises ``error`` when it must not be retried."""
        delay = self._retry_policy(settings).next_delay(attempt, error, random.random, request=api_request)
        if delay is None:
            if error.transient and attempt < settings.max_retries and blocks_repeat(api_request, error):
                self.log.warning(
                    "%s; not retried: the server may already have acted on it, and sending it again "
                    "could do it twice. Check its result in Portkey (trace id %s) before running it again.",
                    error,
                    settings.effective_trace_id(self.trace_id) or "not set",
                )
            raise error
        self.log.log(
            logging.WARNING,
            "%s; retry %d of %d in %.1f s",
            error,
            attempt + 1,
            settings.max_retries,
            delay,
        )
        return delay
