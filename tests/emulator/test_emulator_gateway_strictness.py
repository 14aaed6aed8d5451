"""Where the real gateway is stricter than an upstream, the emulator (in portkey mode) is too.

The open-source gateway parses a JSON-typed POST body before proxying it (an empty one is its
500 "Proxy error: Unexpected end of JSON input"), and gives the upstream only
``x-portkey-request-timeout`` milliseconds (then 408, while the upstream still got the request).
"""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_portkey.emulator import ASST_SLOW, EmulatorServer
from tests.emulator.conftest import OPENAI_HEADERS, RunApi


def test_a_post_typed_json_with_an_empty_body_is_the_gateways_500(
    server: EmulatorServer, client: httpx.Client
) -> None:
    runs = RunApi(client)
    run = runs.create(ASST_SLOW)
    runs.poll(run, 2)

    response = client.post(
        runs.path(run, "/cancel"), content=b"", headers={"content-type": "application/json"}
    )

    assert response.status_code == 500
    assert response.json() == {"status": "failure", "message": "Proxy error: Unexpected end of JSON input"}
    assert runs.get(run)["status"] == "in_progress"  # nothing reached the upstream


def test_a_cancel_without_a_body_or_with_an_object_is_accepted(
    server: EmulatorServer, client: httpx.Client
) -> None:
    runs = RunApi(client)
    for content, headers in [(b"", {}), (b"{}", {"content-type": "application/json"})]:
        run = runs.create(ASST_SLOW)
        response = client.post(runs.path(run, "/cancel"), content=content, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelling"


def test_an_upstream_takes_an_empty_json_body_its_own_way(openai_server: EmulatorServer) -> None:
    """Without the gateway in front, the upstream's own body check answers (a 400, not the 500)."""
    with httpx.Client(base_url=openai_server.base_url, headers=OPENAI_HEADERS, timeout=10) as upstream:
        response = upstream.post("/threads/runs", content=b"", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "error" in response.json()


def test_an_answer_slower_than_the_request_timeout_is_the_gateways_408(
    server: EmulatorServer, client: httpx.Client
) -> None:
    server.state.add_fault("delay", path_contains="/threads/runs", delay=30)

    response = client.post(
        "/threads/runs", json={"assistant_id": ASST_SLOW}, headers={"x-portkey-request-timeout": "50"}
    )

    assert response.status_code == 408
    assert response.json()["error"] == {
        "message": "Request exceeded the timeout sent in the request: 50ms",
        "type": "timeout_error",
        "param": None,
        "code": None,
    }
    assert server.state.runs_created == 1  # the upstream got it all the same: a blind retry duplicates


@pytest.mark.parametrize("timeout", [None, "60000"])
def test_an_answer_within_the_request_timeout_is_unchanged(
    server: EmulatorServer, client: httpx.Client, timeout: str | None
) -> None:
    server.state.add_fault("delay", path_contains="/steps/", delay=0.01)
    headers = {"x-portkey-request-timeout": timeout} if timeout else {}
    response = client.get("/threads/thread_demo/runs/run_demo/steps/step_instant", headers=headers)
    assert response.status_code == 200
