"""Background responses through the real open-source Portkey gateway: the hook, the deferred sensor, a DAG.

The chain of ``test_agent_workflow_through_gateway``: the hook, the triggers' async hook or
``airflow dags test`` -> the gateway (npm ``@portkey-ai/gateway``) -> the emulator in ``openai``
mode, routed with ``provider`` = ``openai``, a provider key and ``custom_host`` = the emulator.
The gateway routes ``POST/GET/DELETE /v1/responses...`` itself (and adds ``"provider"`` to each
answer) and the cancel through its proxy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.emulator.background import MODEL_COMPLETES, MODEL_FAILS, MODEL_SLOW
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.sensors.response import ResponseSensor
from tests.e2e.test_agent_workflow_through_gateway import Forwarded, _connection, forwarded
from tests.example_dags.airflow_cli import run_dag, without_mask_secret_requests
from tests.example_dags.background_response import ANSWERED_STATES
from tests.example_dags.background_response import DAG_ID as BACKGROUND_DAG_ID
from tests.sensors.support import FakeClock, FakeTaskInstance, clock, make_context, run_deferred
from tests.support.gateway import PortkeyGateway
from tests.support.secrets import API_KEY, PROVIDER_KEY, assert_no_secret

__all__ = ["clock", "forwarded"]

pytestmark = pytest.mark.e2e

QUESTION = "Why is the sky blue? é✓"


@pytest.fixture
def upstream(
    monkeypatch: pytest.MonkeyPatch, portkey_gateway: PortkeyGateway, forwarded: list[Forwarded]
) -> Iterator[EmulatorServer]:
    """An openai-mode emulator behind the gateway; ``portkey_default`` points at the gateway."""
    with EmulatorServer(mode="openai") as server:
        monkeypatch.setenv("AIRFLOW_CONN_PORTKEY_DEFAULT", json.dumps(_connection(portkey_gateway, server)))
        yield server


def test_hook_creates_polls_lists_and_deletes_a_background_response(
    upstream: EmulatorServer, forwarded: list[Forwarded]
) -> None:
    body: dict[str, Any] = {
        "model": MODEL_COMPLETES,
        "input": [{"role": "user", "content": QUESTION}],
        "instructions": "Be brief.",
        "metadata": {"source": "e2e"},
    }
    with PortkeyHook() as hook:
        created = hook.create_response(body)
        assert (str(created.status), created.metadata) == ("queued", {"source": "e2e"})
        seen = [str(created.status)]
        response = created
        while not response.is_terminal:
            response = hook.get_response(created.id)
            seen.append(str(response.status))
            assert len(seen) < 10, seen
        items = hook.list_response_input_items(created.id)
        deleted = hook.delete_response(created.id)

    assert seen == ["queued", "in_progress", "completed"]
    assert response.output_text == f"Emulated answer to: {QUESTION}"
    assert response.usage is not None
    assert response.usage.total_tokens == 123
    assert [item["content"][0]["text"] for item in items] == [QUESTION]
    assert deleted["deleted"] is True
    [create] = [item for item in forwarded if item.request.method == "POST"]
    assert create.request.path == "/v1/responses"
    assert create.json() == {**body, "background": True}  # the gateway forwarded the body unchanged
    assert [(item.request.method, item.request.path.rsplit("/", 1)[-1]) for item in forwarded][-2:] == [
        ("GET", "input_items"),
        ("DELETE", created.id),
    ]
    for item in forwarded:
        assert item.request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
        assert API_KEY not in json.dumps(item.request.headers)


def test_hook_cancels_a_background_response_through_the_gateways_proxy(
    upstream: EmulatorServer, forwarded: list[Forwarded]
) -> None:
    with PortkeyHook() as hook:
        created = hook.create_response({"model": MODEL_SLOW, "input": "Take your time."})
        assert str(hook.get_response(created.id).status) == "in_progress"
        cancelled = hook.cancel_response(created.id)
        after = hook.get_response(created.id)
    assert (str(cancelled.status), str(after.status)) == ("cancelled", "cancelled")
    assert forwarded[-2].request.path == f"/v1/responses/{created.id}/cancel"
    assert upstream.state.responses.created == 1


@pytest.mark.parametrize(("model", "status"), [(MODEL_COMPLETES, "completed"), (MODEL_FAILS, "failed")])
def test_the_deferred_sensor_waits_through_the_gateway(
    upstream: EmulatorServer, clock: FakeClock, model: str, status: str
) -> None:
    with PortkeyHook() as hook:
        created = hook.create_response({"model": model, "input": QUESTION})
    with DAG("responses_through_gateway", schedule=None):
        sensor = ResponseSensor(
            task_id="wait", response_id=created.id, deferrable=True, poke_interval=5, fail_on_statuses=()
        )
    ti = FakeTaskInstance()
    result, deferral = run_deferred(sensor, make_context(ti))
    assert deferral.event["status"] == "success"
    assert result["status"] == ti.pushed["status"] == status
    # As Portkey sent it: the upstream's JSON, plus the provider the gateway names in every answer.
    assert result == {**(upstream.state.responses.retrieve(created.id) or {}), "provider": "openai"}


def test_the_background_response_dag_creates_waits_and_branches_through_the_gateway(
    portkey_gateway: PortkeyGateway, airflow_template_db: Path, tmp_path: Path, forwarded: list[Forwarded]
) -> None:
    with EmulatorServer(mode="openai") as upstream:
        result = run_dag(
            airflow_template_db,
            tmp_path / "background-response",
            BACKGROUND_DAG_ID,
            connection=_connection(portkey_gateway, upstream),
        )
        created = upstream.state.responses.created
        requests = upstream.state.requests

    assert (result.returncode, result.run_state) == (0, "success"), result.describe()
    assert result.states() == ANSWERED_STATES
    assert result.deferred_tasks == ["wait_for_response"]
    assert result.xcom("use_answer")["answer"] == "Emulated answer to: Why is the sky blue?"
    assert created == 1
    assert {r.headers["authorization"] for r in requests} == {f"Bearer {PROVIDER_KEY}"}
    assert_no_secret(without_mask_secret_requests(result.output), result.xcoms)
    assert result.python_warnings() == []
