"""The synchronous Portkey hook, for operators and poke-mode sensors."""

from __future__ import annotations

import itertools
import time
from collections.abc import Collection
from types import TracebackType
from typing import Any, Self

import requests

from airflow_provider_portkey.core import (
    ApiRequest,
    connection_error,
    interpret_response,
    list_run_steps_request,
    parse_run_step,
    parse_run_step_list,
    run_step_request,
)
from airflow_provider_portkey.errors import (
    PortkeyBadResponseError,
    PortkeyNotFoundError,
    PortkeyRequestError,
)
from airflow_provider_portkey.hooks.base import PortkeyBaseHook
from airflow_provider_portkey.models import RunStep
from airflow_provider_portkey.settings import PortkeySettings


def _keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Session auth that changes nothing: the headers already carry every credential."""
    return request


class PortkeyHook(PortkeyBaseHook):
    """
    Talk to Portkey's Assistants API (run steps) from a worker.

    One ``requests.Session`` per hook keeps the connection alive between polls. Transient failures
    (connection errors, 408, 429, 5xx) are retried with exponential backoff and full jitter, never
    sooner than a ``Retry-After``; other errors fail at once. Redirects are never followed.
    Use it as a context manager, or call :meth:`close`, to release the session.
    """

    _session: requests.Session | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def settings(self) -> PortkeySettings:
        """The validated connection (read once per hook)."""
        if self._settings is None:
            conn = self.get_connection(self.portkey_conn_id)
            self._settings_from(
                host=conn.host, password=conn.password, port=conn.port, extra=conn.extra_dejson
            )
        assert self._settings is not None
        return self._settings

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            session.headers.clear()
            session.headers.update(self._headers(self.settings))
            # With no session auth, requests would let a ~/.netrc entry for the host overwrite our
            # Authorization (the provider key). A no-op auth stops that; proxies from the
            # environment are still honoured.
            session.auth = _keep_headers
            self._session = session
        return self._session

    def request(self, api_request: ApiRequest) -> Any:
        """Send ``api_request`` with retries; return the decoded JSON or raise a ``PortkeyError``."""
        settings = self.settings
        for attempt in itertools.count():
            try:
                return self._send_once(settings, api_request)
            except PortkeyRequestError as error:
                time.sleep(self._wait_before_retry(settings, attempt, error))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(self, settings: PortkeySettings, api_request: ApiRequest) -> Any:
        try:
            response = self.session.request(
                api_request.method,
                settings.base_url + api_request.path,
                params=list(api_request.params),
                json=api_request.body,
                timeout=(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
            )
            body = response.content
        except requests.RequestException as error:
            raise connection_error(api_request, error, settings.base_url) from None
        return interpret_response(api_request, response.status_code, response.headers, body, settings.secrets)

    def get_run_step(
        self, thread_id: str, run_id: str, step_id: str, include: Collection[str] | None = None
    ) -> RunStep:
        """Retrieve one run step (``GET /threads/{thread_id}/runs/{run_id}/steps/{step_id}``)."""
        api_request = run_step_request(thread_id, run_id, step_id, include)
        return parse_run_step(api_request, self.request(api_request), self.settings.secrets)

    def list_run_steps(
        self,
        thread_id: str,
        run_id: str,
        *,
        limit: int = 100,
        order: str = "asc",
        include: Collection[str] | None = None,
    ) -> list[RunStep]:
        """All steps of a run, following ``has_more``/``after`` across pages."""
        steps: list[RunStep] = []
        after: str | None = None
        while True:
            api_request = list_run_steps_request(
                thread_id, run_id, limit=limit, order=order, after=after, include=include
            )
            page = parse_run_step_list(api_request, self.request(api_request), self.settings.secrets)
            steps += [parse_run_step(api_request, item, self.settings.secrets) for item in page.data]
            if not page.has_more or not page.data:
                return steps
            cursor = page.last_id or steps[-1].id
            if cursor == after:  # the same page again would loop forever
                raise PortkeyBadResponseError(
                    api_request.description, what=f"has_more is true but the cursor stays at {after!r}"
                )
            after = cursor

    def test_connection(self) -> tuple[bool, str]:
        """
        Ask for a step that cannot exist: a 404 proves the URL, the keys and the routing all work.

        Harmless (a read) and cheap (one request, no retries).
        """
        probe = (
            "thread_airflow_connection_test",
            "run_airflow_connection_test",
            "step_airflow_connection_test",
        )
        try:
            with type(self)(self.portkey_conn_id, max_retries=0, trace_id=self.trace_id) as hook:
                hook.get_run_step(*probe)
                base_url = hook.settings.base_url
        except PortkeyNotFoundError as error:
            return True, f"Connected: Portkey and the upstream answered ({error.description} -> 404)."
        except Exception as error:
            return False, str(error)
        return True, f"Connected to {base_url}."
