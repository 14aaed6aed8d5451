"""``POST /v1/feedback``: hosted Portkey's feedback, checked as Portkey documents the body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from airflow_provider_portkey.emulator import EmulatorServer
from tests.emulator.conftest import OPENAI_HEADERS


def test_feedback_needs_only_the_portkey_key_and_is_kept(
    bare_client: httpx.Client, server: EmulatorServer
) -> None:
    body = {"trace_id": "t-1", "value": -10, "weight": 0.5, "metadata": {"_user": "ada"}}
    response = bare_client.post("/feedback", json=body, headers={"x-portkey-api-key": "pk"})
    assert response.status_code == 200
    answer = response.json()
    assert (answer["status"], answer["message"]) == ("success", "Feedback successfully saved")
    [stored] = server.state.feedback.items
    assert stored == {"id": answer["feedback_ids"][0], **body}
    assert httpx.get(f"{server.url}/_emulator/feedback").json() == {"feedback": [stored]}


def test_feedback_without_the_portkey_key_is_401(bare_client: httpx.Client) -> None:
    response = bare_client.post("/feedback", json={"trace_id": "t", "value": 1})
    assert response.status_code == 401
    assert response.json() == {"status": "failure", "message": "Portkey API Key Not Found"}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"value": 1}, '"trace_id" is required'),
        ({"trace_id": "t"}, '"value" is required'),
        ({"trace_id": "t", "value": 11}, "between -10 and 10"),
        ({"trace_id": "t", "value": 1.5}, "integer"),
        ({"trace_id": "t", "value": True}, "integer"),
        ({"trace_id": "t", "value": 1, "weight": 2}, '"weight" must be a number between 0 and 1'),
        ({"trace_id": "t", "value": 1, "metadata": "x"}, '"metadata" must be an object'),
        ([1], "JSON object"),
    ],
)
def test_a_bad_feedback_is_refused_naming_the_field(
    bare_client: httpx.Client, server: EmulatorServer, body: Any, named: str
) -> None:
    response = bare_client.post("/feedback", json=body, headers={"x-portkey-api-key": "pk"})
    assert response.status_code == 400
    assert response.json()["status"] == "failure"
    assert named in response.json()["message"]
    assert server.state.feedback.items == []


def test_an_openai_compatible_upstream_has_no_feedback(openai_server: EmulatorServer) -> None:
    with httpx.Client(base_url=openai_server.base_url, headers=OPENAI_HEADERS, timeout=10) as http:
        response = http.post("/feedback", json={"trace_id": "t", "value": 1})
    assert response.status_code == 404
