"""The transport: keep-alive, many connections, start/stop, the async API, no warnings, no leaks."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
import warnings
from collections.abc import Callable

import httpx
import pytest
import requests

from airflow_provider_portkey.emulator import STEP_INSTANT, EmulatorServer
from tests.emulator.conftest import PORTKEY_HEADERS
from tests.support.secrets import API_KEY, PROVIDER_KEY, VIRTUAL_KEY, assert_no_secret

RAW_GET = (
    b"GET /v1/threads/thread_demo/runs/run_demo/steps/step_instant HTTP/1.1\r\nHost: emulator\r\n"
    b"x-portkey-api-key: pk\r\nx-portkey-virtual-key: vk\r\nOpenAI-Beta: assistants=v2\r\n\r\n"
)


def test_url_and_base_url_point_at_the_chosen_free_port(server: EmulatorServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
    assert server.port > 0
    assert server.base_url == server.url + "/v1"


def test_keep_alive_reuses_one_connection(client: httpx.Client, step_path: Callable[..., str]) -> None:
    ports = set()
    for _ in range(5):
        response = client.get(step_path(STEP_INSTANT))
        assert response.status_code == 200
        ports.add(response.extensions["network_stream"].get_extra_info("client_addr")[1])
    assert len(ports) == 1


def test_keep_alive_works_for_requests_sessions(
    server: EmulatorServer, step_path: Callable[..., str]
) -> None:
    with requests.Session() as session:
        session.headers.update(PORTKEY_HEADERS)
        responses = [session.get(server.base_url + step_path(STEP_INSTANT), timeout=5) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert all(r.headers.get("connection") != "close" for r in responses)


def test_pipelined_requests_are_answered_in_order(server: EmulatorServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(RAW_GET * 3)
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < 3 or not received.endswith(b"}"):
            received += sock.recv(65536)
    assert received.count(b'"id": "step_instant"') == 3


def test_malformed_http_gets_400_and_a_closed_connection(server: EmulatorServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 ")


@pytest.mark.asyncio
async def test_serves_hundreds_of_concurrent_keep_alive_connections(server: EmulatorServer) -> None:
    async def poller() -> list[bytes]:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        heads = []
        for _ in range(3):
            writer.write(RAW_GET)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            heads.append(head.split(b"\r\n", 1)[0])
        writer.close()
        await writer.wait_closed()
        return heads

    results = await asyncio.gather(*(poller() for _ in range(500)))
    assert {line for heads in results for line in heads} == {b"HTTP/1.1 200 OK"}
    assert server.state.request_count == 1500


def test_stop_closes_idle_keep_alive_connections(server: EmulatorServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(RAW_GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        server.stop()
        assert sock.recv(65536) == b""


def test_stop_is_idempotent_and_the_port_is_released(step_path: Callable[..., str]) -> None:
    emulator = EmulatorServer()
    emulator.start()
    url = emulator.url
    emulator.stop()
    emulator.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/")


def test_starting_on_a_taken_port_raises(server: EmulatorServer) -> None:
    with pytest.raises(OSError, match="address already in use"):
        EmulatorServer(port=server.port).start()


def test_start_twice_is_an_error(server: EmulatorServer) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        EmulatorServer(mode="azure")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_async_api_serves_from_the_running_loop(step_path: Callable[..., str]) -> None:
    async with EmulatorServer(seed=False) as emulator, httpx.AsyncClient(base_url=emulator.base_url) as http:
        emulator.state.add_step("thread_a", "run_a", "step_a", statuses=("completed",))
        response = await http.get(step_path("step_a", "thread_a", "run_a"), headers=PORTKEY_HEADERS)
        missing = await http.get(step_path(STEP_INSTANT), headers=PORTKEY_HEADERS)
    assert response.json()["status"] == "completed"
    assert missing.status_code == 404


def test_a_full_session_raises_no_warning(step_path: Callable[..., str]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with (
            EmulatorServer() as emulator,
            httpx.Client(base_url=emulator.base_url, headers=PORTKEY_HEADERS) as http,
        ):
            emulator.state.add_fault("reset")
            emulator.state.add_fault("truncated")
            emulator.state.add_fault("slow_drip", delay=0)
            for _ in range(2):
                with pytest.raises(httpx.TransportError):
                    http.get(step_path(STEP_INSTANT))
            assert http.get(step_path(STEP_INSTANT)).status_code == 200
            emulator.state.add_fault("delay", delay=60)
            with pytest.raises(httpx.ReadTimeout):
                http.get(step_path(STEP_INSTANT), timeout=httpx.Timeout(5, read=0.05))
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_header_values_are_never_logged(
    caplog: pytest.LogCaptureFixture, step_path: Callable[..., str]
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_headers = {
        "x-portkey-api-key": API_KEY,
        "x-portkey-virtual-key": VIRTUAL_KEY,
        "Authorization": f"Bearer {PROVIDER_KEY}",
        "OpenAI-Beta": "assistants=v2",
    }
    with (
        EmulatorServer() as emulator,
        httpx.Client(base_url=emulator.base_url, headers=secret_headers) as http,
    ):
        emulator.state.add_fault("reset")
        with pytest.raises(httpx.ReadError):
            http.get(step_path(STEP_INSTANT))
        http.get(step_path(STEP_INSTANT))
        http.get(step_path("step_missing"))
    own = [
        r.getMessage() for r in caplog.records if r.name.startswith(("airflow_provider_portkey", "asyncio"))
    ]
    assert_no_secret(*own)
