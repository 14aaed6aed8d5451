"""The asynchronous Portkey hook, for triggers on the triggerer's event loop.

Thousands of triggers may wait at once, so none of them owns a connection pool or TLS context:
all hooks on one event loop share one ``httpx.AsyncClient`` and hold only plain settings while
they sleep; hooks on one Airflow connection made within :data:`CONNECTION_REUSE_SECONDS` of each
other share one read of it. Requests and responses go through the same core as :class:`PortkeyHook`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from airflow_provider_portkey._compat import amask_secret
from airflow_provider_portkey.errors import PortkeyRequestError
from airflow_provider_portkey.hooks.base import PortkeyBaseHook
from airflow_provider_portkey.models import Run, RunStep
from airflow_provider_portkey.models_response import Response
from airflow_provider_portkey.protocol import (
    ApiRequest,
    cancel_run_request,
    connection_error,
    get_run_request,
    interpret_response,
    next_page_after,
    parse_run,
    parse_run_step,
    run_step_request,
)
from airflow_provider_portkey.responses_api import (
    cancel_response_request,
    create_response_request,
    delete_response_request,
    get_response_request,
    list_input_items_request,
    parse_deletion,
    parse_item_list,
    parse_response,
    response_body,
)
from airflow_provider_portkey.settings import PortkeySettings

_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=64)  # = MAX_IN_FLIGHT: no idle churn
#: Requests in flight per event loop. httpcore's pool does work proportional to waiting requests x
#: open connections on every event, so thousands of triggers polling at once (say, after a
#: triggerer restart) collapse without a bound; queueing here is cheap and fair.
MAX_IN_FLIGHT = 64
#: How long one read of an Airflow connection serves the hooks made after it on the same loop. A
#: triggerer restart starts hundreds of triggers on one connection within seconds, and each read
#: is the largest cost of a trigger's first poll (a request to the API server on a real triggerer;
#: secrets backends set up again and the secrets masked, even for an environment variable). A hook
#: keeps its settings for its whole wait anyway, so this only delays by at most this long when an
#: edit of the connection reaches a trigger that starts after it; a read that failed is not reused.
CONNECTION_REUSE_SECONDS = 10.0


@dataclass
class _LoopTransport:
    """What one event loop shares among all its hooks: the client, the in-flight bound, its closer."""

    client: httpx.AsyncClient
    slots: asyncio.Semaphore
    closer: AsyncGenerator[None, None]
    #: conn id -> (monotonic time of the read, the read): see :data:`CONNECTION_REUSE_SECONDS`.
    connections: dict[str, tuple[float, asyncio.Future[PortkeySettings]]] = field(default_factory=dict)

    def read_connection(
        self, conn_id: str, read: Callable[[], Awaitable[PortkeySettings]]
    ) -> asyncio.Future[PortkeySettings]:
        """The recent (or running) read of ``conn_id``, or a new one made by ``read``."""
        now = time.monotonic()
        entry = self.connections.get(conn_id)
        if entry is not None and now - entry[0] <= CONNECTION_REUSE_SECONDS:
            return entry[1]
        future = asyncio.ensure_future(read())
        self.connections[conn_id] = (now, future)

        def forget_failure(done: asyncio.Future[PortkeySettings]) -> None:
            # exception() also marks it retrieved: a read nobody awaits any more logs nothing.
            if (done.cancelled() or done.exception() is not None) and self.connections.get(
                conn_id, (0, None)
            )[1] is done:
                del self.connections[conn_id]

        future.add_done_callback(forget_failure)
        return future


_transports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopTransport] = (
    weakref.WeakKeyDictionary()
)


async def _close_at_loop_shutdown(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """
    Parked at its ``yield`` for the loop's lifetime; ``asyncio.run`` finalizes it on shutdown.

    ``airflow dags test`` runs each deferral on a fresh ``asyncio.run`` loop: this closes that
    loop's client before the loop goes, so no connection outlives it.
    """
    try:
        yield
    finally:
        await client.aclose()


def _transport() -> _LoopTransport:
    loop = asyncio.get_running_loop()
    transport = _transports.get(loop)
    if transport is None or transport.client.is_closed:
        # trust_env: the same proxy and CA settings from the environment as the sync hook's requests.
        client = httpx.AsyncClient(follow_redirects=False, limits=_LIMITS, trust_env=True)
        closer = _close_at_loop_shutdown(client)
        # Run it to its yield now (it awaits nothing before), so the loop tracks it for shutdown.
        with contextlib.suppress(StopIteration):
            closer.asend(None).send(None)
        transport = _LoopTransport(client, asyncio.Semaphore(MAX_IN_FLIGHT), closer)
        _transports[loop] = transport
    return transport


def shared_client() -> httpx.AsyncClient:
    """The one HTTP client of the running event loop (created on first use)."""
    return _transport().client


async def close_shared_client() -> None:
    """Close the running loop's shared client now (tests and orderly shutdowns)."""
    transport = _transports.pop(asyncio.get_running_loop(), None)
    if transport is not None:
        await transport.closer.aclose()


class PortkeyAsyncHook(PortkeyBaseHook):
    """Async twin of :class:`..portkey.PortkeyHook`: same core, same retries, same errors."""

    async def get_settings(self) -> PortkeySettings:
        """The validated connection, read without blocking the event loop (once per hook, see the module)."""
        if self._settings is None:
            read = _transport().read_connection(self.portkey_conn_id, self._read_connection)
            # shield: a trigger cancelled while waiting does not cancel the read other hooks await.
            self._settings = self._with_overrides(await asyncio.shield(read))
        return self._settings

    async def _read_connection(self) -> PortkeySettings:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

        conn = await get_async_connection(self.portkey_conn_id)
        extra = await get_async_extra_dejson(conn)
        settings = self._connection_settings(
            host=conn.host, password=conn.password, port=conn.port, extra=extra
        )
        for secret in settings.secrets:
            await amask_secret(secret)
        return settings

    async def request(self, api_request: ApiRequest) -> Any:
        settings = await self.get_settings()
        for attempt in itertools.count():
            try:
                return await self._send_once(settings, api_request)
            except PortkeyRequestError as error:
                await asyncio.sleep(self._wait_before_retry(settings, api_request, attempt, error))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send_once(self, settings: PortkeySettings, api_request: ApiRequest) -> Any:
        transport = _transport()
        try:
            async with transport.slots:
                response = await transport.client.request(
                    api_request.method,
                    settings.base_url + api_request.path,
                    params=list(api_request.params) or None,  # httpx rebuilds the URL even for []
                    json=api_request.body,
                    headers=self._headers(settings, api_request),
                    timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
                )
        except httpx.HTTPError as error:
            raise connection_error(api_request, error, settings.base_url, self.portkey_conn_id) from None
        return interpret_response(
            api_request, response.status_code, response.headers, response.content, settings.secrets
        )

    async def get_run_step(
        self, thread_id: str, run_id: str, step_id: str, include: Collection[str] | None = None
    ) -> RunStep:
        api_request = run_step_request(thread_id, run_id, step_id, include)
        return parse_run_step(
            api_request, await self.request(api_request), (await self.get_settings()).secrets
        )

    async def get_run(self, thread_id: str, run_id: str) -> Run:
        api_request = get_run_request(thread_id, run_id)
        return parse_run(api_request, await self.request(api_request), (await self.get_settings()).secrets)

    async def cancel_run(self, thread_id: str, run_id: str) -> Run:
        api_request = cancel_run_request(thread_id, run_id)
        return parse_run(api_request, await self.request(api_request), (await self.get_settings()).secrets)

    # -- the Responses API (airflow_provider_portkey.responses_api) ----------------------------------

    async def _response(self, api_request: ApiRequest) -> Response:
        payload = await self.request(api_request)
        return parse_response(api_request, payload, (await self.get_settings()).secrets)

    async def create_response(self, body: Mapping[str, Any], *, background: bool = True) -> Response:
        return await self._response(create_response_request(response_body(body, background=background)))

    async def get_response(self, response_id: str, include: Collection[str] | None = None) -> Response:
        return await self._response(get_response_request(response_id, include))

    async def cancel_response(self, response_id: str) -> Response:
        return await self._response(cancel_response_request(response_id))

    async def delete_response(self, response_id: str) -> dict[str, Any]:
        api_request = delete_response_request(response_id)
        payload = await self.request(api_request)
        return parse_deletion(api_request, payload, (await self.get_settings()).secrets)

    async def list_response_input_items(
        self, response_id: str, *, order: str = "asc", include: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        secrets = (await self.get_settings()).secrets
        items: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            api_request = list_input_items_request(response_id, order=order, after=after, include=include)
            page = parse_item_list(api_request, await self.request(api_request), secrets)
            items += page.data
            after = next_page_after(api_request, page, after)
            if after is None:
                return items
