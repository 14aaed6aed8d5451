"""A POST that creates or changes something is retried only when the failure proves nothing was done.

Both hooks, real sockets: the emulator's ``reset_after`` fault processes the POST (the run exists)
and then resets the connection, which is exactly the case where a blind retry makes a duplicate.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
import requests
import urllib3.exceptions

from airflow_provider_portkey.emulator import ASST_DEMO, EmulatorServer
from airflow_provider_portkey.errors import PortkeyConnectionError, PortkeyRequestError, PortkeyServerError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook, close_shared_client
from airflow_provider_portkey.protocol import (
    ApiRequest,
    cancel_run_request,
    connection_error,
    create_thread_and_run_request,
    error_for_status,
    get_run_request,
    never_connected,
    run_body,
    submit_tool_outputs_request,
)
from airflow_provider_portkey.retries import RetryPolicy, proves_nothing_done
from tests.conftest import PortkeyConnection
from tests.sensors.support import debug_logs, log_text

__all__ = ["debug_logs"]

CREATE_PATH = "/v1/threads/runs"


@pytest_asyncio.fixture(autouse=True)
async def _close_client_after_each_test() -> AsyncIterator[None]:
    yield
    await close_shared_client()


def use_host(monkeypatch: pytest.MonkeyPatch, conn: PortkeyConnection, host: str, **extra: Any) -> None:
    fields = {**conn.fields, "host": host, "extra": {**conn.fields["extra"], **extra}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn.conn_id.upper()}", json.dumps(fields))


def creates(emulator: EmulatorServer) -> int:
    return sum(1 for r in emulator.state.requests if (r.method, r.path) == ("POST", CREATE_PATH))


async def create_async() -> Any:
    return await PortkeyAsyncHook().request(create_thread_and_run_request(run_body(ASST_DEMO)))


def create_sync() -> Any:
    with PortkeyHook() as hook:
        return hook.create_thread_and_run(ASST_DEMO)


# -- the decision, in retries.py ---------------------------------------------------------------------------


def test_gets_are_safe_to_repeat_and_every_run_changing_post_is_not() -> None:
    assert get_run_request("t", "r").safe_to_repeat
    for request in (
        create_thread_and_run_request(run_body("a")),
        cancel_run_request("t", "r"),
        submit_tool_outputs_request("t", "r", {"c": "x"}),
    ):
        assert not request.safe_to_repeat, request
    assert ApiRequest("POST", "/x", idempotent=True).safe_to_repeat


@pytest.mark.parametrize(
    ("status", "nothing_done"),
    [(429, True), (503, True), (408, False), (500, False), (502, False), (504, False)],
)
def test_only_429_and_503_prove_the_server_did_nothing(status: int, nothing_done: bool) -> None:
    post = create_thread_and_run_request(run_body("a"))
    error = error_for_status(post, status, {}, b"")
    assert error.transient
    assert proves_nothing_done(error) is nothing_done
    policy = RetryPolicy(max_retries=3, max_wait=10)
    decision = policy.decide(post, error, 0, rand=lambda: 1.0)
    assert (decision.delay is not None, decision.kind) == (
        (True, "retry") if nothing_done else (False, "unsafe")
    )
    assert policy.decide(get_run_request("t", "r"), error, 0, rand=lambda: 1.0).delay == 1.0


#: Stands in for the urllib3 connection object its exceptions carry (only for their messages).
NO_CONN: Any = None


def _requests_error(reason: Exception) -> requests.ConnectionError:
    """How ``requests`` wraps a urllib3 failure: ConnectionError(MaxRetryError(reason=...))."""
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(NO_CONN, "/v1", reason))


TRANSPORT_ERRORS: list[tuple[str, Callable[[], BaseException], bool]] = [
    (
        "requests-refused",
        lambda: _requests_error(urllib3.exceptions.NewConnectionError(NO_CONN, "refused")),
        True,
    ),
    (
        "requests-dns",
        lambda: _requests_error(urllib3.exceptions.NameResolutionError("h", NO_CONN, socket.gaierror())),
        True,
    ),
    ("requests-connect-timeout", lambda: requests.ConnectTimeout("timed out"), True),
    (
        "requests-reset",
        lambda: requests.ConnectionError(
            urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError())
        ),
        False,
    ),
    ("requests-read-timeout", lambda: requests.ReadTimeout("read timed out"), False),
    ("requests-chunked", lambda: requests.exceptions.ChunkedEncodingError("cut short"), False),
    ("httpx-refused", lambda: httpx.ConnectError("refused"), True),
    ("httpx-connect-timeout", lambda: httpx.ConnectTimeout("timed out"), True),
    ("httpx-pool-timeout", lambda: httpx.PoolTimeout("no free connection"), True),
    ("httpx-read-timeout", lambda: httpx.ReadTimeout("read timed out"), False),
    ("httpx-write-timeout", lambda: httpx.WriteTimeout("write timed out"), False),
    ("httpx-reset", lambda: httpx.ReadError("connection reset"), False),
    ("httpx-protocol", lambda: httpx.RemoteProtocolError("server disconnected"), False),
]


@pytest.mark.parametrize(("name", "make", "unsent"), TRANSPORT_ERRORS, ids=[e[0] for e in TRANSPORT_ERRORS])
def test_only_a_connection_never_established_proves_nothing_was_sent(
    name: str, make: Callable[[], BaseException], unsent: bool
) -> None:
    error = make()
    assert never_connected(error) is unsent
    wrapped = connection_error(create_thread_and_run_request(run_body("a")), error)
    assert wrapped.never_sent is proves_nothing_done(wrapped) is unsent
    assert ("never connected" in str(wrapped)) is unsent


def test_cyclic_exception_chains_do_not_loop() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    assert not never_connected(first)


# -- the sync hook over real sockets -----------------------------------------------------------------------


def test_post_is_not_retried_after_the_server_acted_and_reset(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
    debug_logs: list[dict[str, Any]],
) -> None:
    emulator.state.add_fault("reset_after", path_contains=CREATE_PATH)
    with pytest.raises(PortkeyConnectionError) as caught:
        create_sync()
    assert not caught.value.never_sent
    assert (creates(emulator), emulator.state.runs_created, sleeps) == (1, 1, [])
    assert "not retried: the server may already have acted on it" in log_text(debug_logs, "warning")


@pytest.mark.parametrize("fault", ["reset", "truncated"])
def test_post_is_not_retried_after_a_reset_or_a_cut_answer(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, sleeps: list[float], fault: str
) -> None:
    emulator.state.add_fault(fault, path_contains=CREATE_PATH)  # type: ignore[arg-type]
    with pytest.raises(PortkeyConnectionError):
        create_sync()
    assert (creates(emulator), sleeps) == (1, [])


def test_post_is_not_retried_after_a_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
) -> None:
    portkey_conn.set(monkeypatch, read_timeout=0.2)
    emulator.state.add_fault("delay", path_contains=CREATE_PATH, delay=1.0)
    with pytest.raises(PortkeyConnectionError) as caught:
        create_sync()
    assert "ReadTimeout" in str(caught.value)
    assert (creates(emulator), sleeps) == (1, [])


@pytest.mark.parametrize("status", [408, 500, 502, 504])
def test_post_is_not_retried_after_a_status_that_may_follow_processing(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, sleeps: list[float], status: int
) -> None:
    emulator.state.add_fault("status", path_contains=CREATE_PATH, status=status)
    with pytest.raises(PortkeyServerError):
        create_sync()
    assert (creates(emulator), sleeps) == (1, [])


@pytest.mark.parametrize("status", [429, 503])
def test_post_is_retried_after_429_or_503_and_creates_one_run(
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
    no_jitter: None,
    status: int,
) -> None:
    emulator.state.add_fault("status", path_contains=CREATE_PATH, status=status, times=2)
    run = create_sync()
    assert (creates(emulator), emulator.state.runs_created, sleeps) == (3, 1, [1.0, 2.0])
    assert str(run.status) == "queued"


def test_post_is_retried_when_the_connection_is_refused(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, closed_port: int, sleeps: list[float]
) -> None:
    use_host(monkeypatch, portkey_conn, f"http://127.0.0.1:{closed_port}", max_retries=2)
    with pytest.raises(PortkeyConnectionError) as caught:
        create_sync()
    assert caught.value.never_sent
    assert "never connected" in str(caught.value)
    assert len(sleeps) == 2


def test_post_is_retried_after_a_connect_timeout(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, stalled_port: int, sleeps: list[float]
) -> None:
    use_host(
        monkeypatch, portkey_conn, f"http://127.0.0.1:{stalled_port}", max_retries=1, connect_timeout=0.2
    )
    with pytest.raises(PortkeyConnectionError) as caught:
        create_sync()
    assert caught.value.never_sent
    assert "ConnectTimeout" in str(caught.value)
    assert len(sleeps) == 1


def test_get_is_still_retried_after_a_reset(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, sleeps: list[float]
) -> None:
    with PortkeyHook() as hook:
        run = hook.create_thread_and_run(ASST_DEMO)
        emulator.state.add_fault("reset_after", path_contains=f"/runs/{run.id}")
        assert hook.get_run(run.thread_id, run.id).id == run.id
    assert len(sleeps) == 1


# -- the async hook: the same decision over httpx ------------------------------------------------


@pytest.fixture
def async_sleeps(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, mocker: Any
) -> list[float]:
    """
    The async hook's retry waits, which cost nothing (``max_retry_wait`` 0).

    ``asyncio.sleep`` itself is left alone: the emulator's event loop uses it for its faults.
    """
    portkey_conn.set(monkeypatch, max_retry_wait=0)
    recorded: list[float] = []
    original = PortkeyAsyncHook._wait_before_retry

    def record(self: PortkeyAsyncHook, *args: Any) -> float:
        delay = original(self, *args)
        recorded.append(delay)
        return delay

    mocker.patch.object(PortkeyAsyncHook, "_wait_before_retry", record)
    return recorded


@pytest.mark.asyncio
async def test_async_post_is_not_retried_after_the_server_acted_and_reset(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, async_sleeps: list[float]
) -> None:
    emulator.state.add_fault("reset_after", path_contains=CREATE_PATH)
    with pytest.raises(PortkeyConnectionError) as caught:
        await create_async()
    assert not caught.value.never_sent
    assert (creates(emulator), emulator.state.runs_created, async_sleeps) == (1, 1, [])


@pytest.mark.asyncio
async def test_async_post_is_retried_after_503_and_creates_one_run(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, async_sleeps: list[float]
) -> None:
    emulator.state.add_fault("status", path_contains=CREATE_PATH, status=503)
    await create_async()
    assert (creates(emulator), emulator.state.runs_created, len(async_sleeps)) == (2, 1, 1)


@pytest.mark.asyncio
async def test_async_post_is_retried_when_the_connection_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    closed_port: int,
    async_sleeps: list[float],
) -> None:
    use_host(monkeypatch, portkey_conn, f"http://127.0.0.1:{closed_port}", max_retries=2, max_retry_wait=0)
    with pytest.raises(PortkeyConnectionError) as caught:
        await create_async()
    assert caught.value.never_sent
    assert len(async_sleeps) == 2


@pytest.mark.asyncio
async def test_async_post_is_not_retried_after_a_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    async_sleeps: list[float],
) -> None:
    portkey_conn.set(monkeypatch, read_timeout=0.2, max_retry_wait=0)
    emulator.state.add_fault("delay", path_contains=CREATE_PATH, delay=1.0)
    with pytest.raises(PortkeyRequestError) as caught:
        await create_async()
    assert "ReadTimeout" in str(caught.value)
    assert (creates(emulator), async_sleeps) == (1, [])
