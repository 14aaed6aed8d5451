"""Fault injection: every kind, FIFO consumption by path, and that faulted requests are recorded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import requests

from airflow_provider_portkey.emulator import STEP_COMPLETES, STEP_INSTANT, EmulatorServer
from tests.emulator.conftest import PORTKEY_HEADERS


def test_status_fault_sends_429_with_retry_after_and_an_upstream_error(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("status", status=429, headers={"Retry-After": "7"})
    response = client.get(step_path(STEP_INSTANT))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-request-id"].startswith("req_")
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert client.get(step_path(STEP_INSTANT)).status_code == 200


def test_status_fault_repeats_for_times_then_clears(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("status", status=503, times=2)
    codes = [client.get(step_path(STEP_INSTANT)).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert client.get(step_path(STEP_INSTANT)).json()["status"] == "completed"


def test_status_fault_sends_a_given_body(server: EmulatorServer, client: httpx.Client) -> None:
    body = {"status": "failure", "message": "Budget exhausted"}
    server.state.add_fault("status", status=412, body=body)
    response = client.get("/threads/t/runs/r/steps/s")
    assert (response.status_code, response.json()) == (412, body)


def test_faults_apply_only_to_matching_paths_in_fifo_order(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("status", status=500, path_contains=STEP_COMPLETES)
    server.state.add_fault("status", status=502, path_contains="/steps")
    server.state.add_fault("status", status=504, path_contains=STEP_COMPLETES)
    codes = [
        client.get(step_path(step)).status_code for step in (STEP_INSTANT, STEP_COMPLETES, STEP_COMPLETES)
    ]
    assert codes == [502, 500, 504]
    assert client.get(step_path(STEP_COMPLETES)).status_code == 200


def test_a_step_answered_by_a_fault_does_not_advance(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("status", status=503, times=3)
    for _ in range(3):
        client.get(step_path(STEP_COMPLETES))
    assert client.get(step_path(STEP_COMPLETES)).json()["status"] == "in_progress"


def test_delay_fault_answers_normally_after_the_delay(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("delay", delay=0.2)
    started = time.monotonic()
    response = client.get(step_path(STEP_INSTANT))
    assert time.monotonic() - started >= 0.2
    assert response.json()["status"] == "completed"


def test_delay_fault_makes_a_client_read_time_out(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("delay", delay=30)
    with pytest.raises(httpx.ReadTimeout):
        client.get(step_path(STEP_INSTANT), timeout=httpx.Timeout(5, read=0.1))


def test_delay_fault_does_not_block_other_connections(
    server: EmulatorServer,
    client: httpx.Client,
    step_path: Callable[..., str],
    wait_until: Callable[[Callable[[], bool]], None],
) -> None:
    server.state.add_fault("delay", delay=30, path_contains=STEP_COMPLETES)
    with (
        ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=server.base_url, headers=PORTKEY_HEADERS) as slow,
    ):
        pending = pool.submit(slow.get, step_path(STEP_COMPLETES), timeout=10)
        wait_until(lambda: server.state.request_count == 1)
        started = time.monotonic()
        assert client.get(step_path(STEP_INSTANT)).status_code == 200
        assert time.monotonic() - started < 1
        assert not pending.done()
        server.stop()  # closes the delayed connection instead of waiting it out
        with pytest.raises(httpx.RemoteProtocolError):
            pending.result()


def test_reset_fault_makes_the_client_see_a_connection_reset(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("reset")
    with pytest.raises(httpx.ReadError, match="reset"):
        client.get(step_path(STEP_INSTANT))
    assert client.get(step_path(STEP_INSTANT)).status_code == 200


def test_reset_fault_is_a_connection_error_for_requests(
    server: EmulatorServer, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("reset")
    with requests.Session() as session, pytest.raises(requests.ConnectionError):
        session.get(server.base_url + step_path(STEP_INSTANT), headers=PORTKEY_HEADERS, timeout=5)


def test_truncated_fault_is_a_protocol_error(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("truncated")
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        client.get(step_path(STEP_INSTANT))
    assert client.get(step_path(STEP_INSTANT)).status_code == 200


def test_truncated_fault_is_a_protocol_error_for_requests(
    server: EmulatorServer, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("truncated")
    with requests.Session() as session, pytest.raises(requests.exceptions.ChunkedEncodingError):
        session.get(server.base_url + step_path(STEP_INSTANT), headers=PORTKEY_HEADERS, timeout=5)


@pytest.mark.parametrize(
    ("body", "headers", "text", "content_type"),
    [
        ("not json", None, "not json", "application/json"),
        ("<html>Bad gateway</html>", {"Content-Type": "text/html"}, "<html>Bad gateway</html>", "text/html"),
        (None, None, "", "application/json"),
        ({"object": "list"}, None, '{"object": "list"}', "application/json"),
    ],
    ids=["not-json", "html", "empty", "wrong-shape"],
)
def test_malformed_fault_sends_200_with_the_given_body(
    server: EmulatorServer,
    client: httpx.Client,
    step_path: Callable[..., str],
    body: str | dict[str, str] | None,
    headers: dict[str, str] | None,
    text: str,
    content_type: str,
) -> None:
    server.state.add_fault("malformed", body=body, headers=headers)
    response = client.get(step_path(STEP_INSTANT))
    assert response.status_code == 200
    assert response.text == text
    assert response.headers["content-type"] == content_type


def test_slow_drip_fault_sends_the_normal_body_in_pieces(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("slow_drip", delay=0.002)
    with client.stream("GET", step_path(STEP_INSTANT)) as response:
        pieces = list(response.iter_raw())
    assert len(pieces) > 5
    assert json.loads(b"".join(pieces))["status"] == "completed"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_fault_sends_location(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str], status: int
) -> None:
    server.state.add_fault("redirect", status=status, location="http://127.0.0.1:9/elsewhere")
    response = client.get(step_path(STEP_INSTANT))
    assert response.status_code == status
    assert response.headers["location"] == "http://127.0.0.1:9/elsewhere"


def test_faulted_requests_are_recorded(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_fault("status", status=500)
    server.state.add_fault("reset")
    client.get(step_path(STEP_INSTANT))
    with pytest.raises(httpx.ReadError):
        client.get(step_path(STEP_INSTANT))
    assert [r.path for r in server.state.requests] == ["/v1" + step_path(STEP_INSTANT)] * 2


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("explode", {}),
        ("redirect", {}),
        ("redirect", {"location": "/x", "status": 200}),
        ("status", {"times": 0}),
        ("delay", {"delay": -1}),
    ],
)
def test_invalid_faults_are_rejected(server: EmulatorServer, kind: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        server.state.add_fault(kind, **options)  # type: ignore[arg-type]
