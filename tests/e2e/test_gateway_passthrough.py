"""The real open-source Portkey gateway passes OpenAI-style run-step traffic through unchanged.

The upstream here is a throwaway ``ThreadingHTTPServer`` on a loopback port that answers canned
responses and records every request it receives.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.gateway import INSTALL_SCRIPT, PortkeyGateway, PortkeyGatewayError
from tests.support.ports import LOOPBACK

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
STEP_PATH = "/v1/threads/thread_abc/runs/run_abc/steps/step_abc"
RUN_STEP: dict[str, Any] = {
    "id": "step_abc",
    "object": "thread.run.step",
    "created_at": 1_700_000_000,
    "assistant_id": "asst_abc",
    "thread_id": "thread_abc",
    "run_id": "run_abc",
    "type": "tool_calls",
    "status": "completed",
    "step_details": {
        "type": "tool_calls",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}", "output": "ok"}}
        ],
    },
    "last_error": None,
    "expired_at": None,
    "cancelled_at": None,
    "failed_at": None,
    "completed_at": 1_700_000_005,
    "metadata": {"k": "v", "unicode": "é✓"},
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass(frozen=True)
class Canned:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Upstream:
    """Canned responses by path (default: the run step as JSON), and every request received."""

    port: int = 0
    routes: dict[str, Canned] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def last(self) -> Received:
        with self.lock:
            return self.received[-1]


def _make_handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else keep-alive requests stall on delayed ACKs

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            received = Received(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            with upstream.lock:
                upstream.received.append(received)
            canned = upstream.routes.get(self.path) or Canned(200, json.dumps(RUN_STEP).encode())
            self.send_response(canned.status)
            self.send_header("Content-Type", "application/json")
            for name, value in canned.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(canned.body)))
            self.end_headers()
            self.wfile.write(canned.body)

        do_GET = do_POST = do_DELETE = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    state = Upstream()
    server = ThreadingHTTPServer((LOOPBACK, 0), _make_handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="throwaway-upstream", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _routing_headers(upstream: Upstream) -> dict[str, str]:
    return {
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": upstream.base_url,
        "Authorization": "Bearer sk-test",
        "OpenAI-Beta": "assistants=v2",
    }


def test_run_step_get_passes_through_unchanged(portkey_gateway: PortkeyGateway, upstream: Upstream) -> None:
    response = requests.get(
        f"{portkey_gateway.url}{STEP_PATH}", headers=_routing_headers(upstream), timeout=TIMEOUT
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == RUN_STEP

    seen = upstream.last()
    assert seen.method == "GET"
    assert seen.path == STEP_PATH
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["openai-beta"] == "assistants=v2"
    assert not [name for name in seen.headers if name.startswith("x-portkey-")], seen.headers


def test_post_body_passes_through(portkey_gateway: PortkeyGateway, upstream: Upstream) -> None:
    payload = {"assistant_id": "asst_abc", "metadata": {"dag": "d", "note": "é✓"}}
    response = requests.post(
        f"{portkey_gateway.base_url}/threads/thread_abc/runs",
        headers=_routing_headers(upstream),
        json=payload,
        timeout=TIMEOUT,
    )

    assert response.status_code == 200, response.text
    seen = upstream.last()
    assert seen.method == "POST"
    assert seen.path == "/v1/threads/thread_abc/runs"
    assert json.loads(seen.body) == payload


@pytest.mark.parametrize(
    ("status", "extra_headers"),
    [
        pytest.param(404, {}, id="404"),
        pytest.param(429, {"Retry-After": "2"}, id="429-retry-after"),
        pytest.param(503, {"Retry-After": "2"}, id="503-retry-after"),
    ],
)
def test_upstream_errors_pass_through(
    portkey_gateway: PortkeyGateway, upstream: Upstream, status: int, extra_headers: dict[str, str]
) -> None:
    path = f"/v1/threads/thread_err/runs/run_{status}/steps/step_{status}"
    error = {
        "error": {"message": f"upstream said {status}", "type": "test_error", "param": None, "code": None}
    }
    upstream.routes[path] = Canned(status, json.dumps(error).encode(), extra_headers)
    before = len(upstream.received)

    response = requests.get(
        f"{portkey_gateway.url}{path}", headers=_routing_headers(upstream), timeout=TIMEOUT
    )

    assert response.status_code == status
    assert response.json() == error
    if "Retry-After" in extra_headers:
        assert response.headers.get("retry-after") == extra_headers["Retry-After"]
    # One upstream call: the gateway does not retry unless a config asks it to.
    assert len(upstream.received) == before + 1


def test_missing_routing_header_is_the_gateways_own_400(
    portkey_gateway: PortkeyGateway, upstream: Upstream
) -> None:
    before = len(upstream.received)

    response = requests.get(
        f"{portkey_gateway.url}{STEP_PATH}",
        headers={"Authorization": "Bearer sk-test", "OpenAI-Beta": "assistants=v2"},
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "failure"
    assert "x-portkey-provider" in body["message"]
    assert len(upstream.received) == before


def test_gateway_root_and_addresses(portkey_gateway: PortkeyGateway) -> None:
    assert portkey_gateway.url == f"http://127.0.0.1:{portkey_gateway.port}"
    assert portkey_gateway.base_url == f"{portkey_gateway.url}/v1"
    response = requests.get(f"{portkey_gateway.url}/", timeout=TIMEOUT)
    assert response.status_code == 200
    assert portkey_gateway.running


def test_install_is_cached(portkey_gateway_entry: Path) -> None:
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["bash", str(INSTALL_SCRIPT)],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip().splitlines()[-1] == str(portkey_gateway_entry)
    assert "installing" not in result.stderr, result.stderr


def test_missing_node_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    with pytest.raises(PortkeyGatewayError, match=r"'node' is not on PATH"):
        PortkeyGateway.install(tmp_path / "cache")
