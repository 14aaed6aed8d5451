"""The run API and the agent-workflow example DAG through the real open-source Portkey gateway.

The chain is the one of ``test_through_gateway``: the sync hook or ``airflow dags test`` -> the
gateway (npm ``@portkey-ai/gateway`` on a loopback port) -> the emulator in ``openai`` mode, routed
with ``provider`` = ``openai``, a provider key and ``custom_host`` = the emulator. The emulator's
request record has no bodies, so the hook tests wrap its ``handle_api`` (in this process) to see
exactly which bytes the gateway forwarded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_portkey.emulator import ASST_SLOW, ASST_TOOLS, EmulatorServer
from airflow_provider_portkey.emulator import server as emulator_server
from airflow_provider_portkey.emulator.app import Mode, Response, handle_api
from airflow_provider_portkey.emulator.state import EmulatorState, ReceivedRequest
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from tests.example_dags.agent_workflow import DAG_ID, TOOL_PATH_STATES, computed_tool_output
from tests.example_dags.airflow_cli import run_dag, without_mask_secret_requests
from tests.support.gateway import PortkeyGateway
from tests.support.secrets import API_KEY, PROVIDER_KEY, assert_no_secret

pytestmark = pytest.mark.e2e

QUESTION = "What is the weather in Paris? é✓"


@dataclass(frozen=True)
class Forwarded:
    """One API request as the upstream received it, body included."""

    request: ReceivedRequest
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _connection(gateway: PortkeyGateway, upstream: EmulatorServer) -> dict[str, Any]:
    return {
        "conn_type": "portkey",
        "host": gateway.url,
        "password": API_KEY,
        "extra": {
            "provider": "openai",
            "provider_api_key": PROVIDER_KEY,
            "custom_host": upstream.base_url,
            "max_retry_wait": 2,
        },
    }


@pytest.fixture
def forwarded(monkeypatch: pytest.MonkeyPatch) -> list[Forwarded]:
    """Every API request (with its body) the in-process emulators answer during the test."""
    received: list[Forwarded] = []
    original = handle_api

    def recording(state: EmulatorState, mode: Mode, request: ReceivedRequest, body: bytes = b"") -> Response:
        received.append(Forwarded(request, body))
        return original(state, mode, request, body)

    monkeypatch.setattr(emulator_server, "handle_api", recording)  # raises if the server stops using it
    return received


@pytest.fixture
def upstream(
    monkeypatch: pytest.MonkeyPatch, portkey_gateway: PortkeyGateway, forwarded: list[Forwarded]
) -> Iterator[EmulatorServer]:
    """An openai-mode emulator behind the gateway; ``portkey_default`` points at the gateway."""
    with EmulatorServer(mode="openai") as server:
        connection = _connection(portkey_gateway, server)
        monkeypatch.setenv("AIRFLOW_CONN_PORTKEY_DEFAULT", json.dumps(connection))
        yield server


def _posts(forwarded: list[Forwarded]) -> list[Forwarded]:
    return [item for item in forwarded if item.request.method == "POST"]


# -- the sync hook ---------------------------------------------------------------------------------------


def test_hook_runs_an_agent_through_tool_outputs_to_completion(
    upstream: EmulatorServer, forwarded: list[Forwarded]
) -> None:
    thread = {"messages": [{"role": "user", "content": QUESTION}]}
    with PortkeyHook() as hook:
        run = hook.create_thread_and_run(
            ASST_TOOLS,
            thread=thread,
            metadata={"source": "e2e"},
            options={"instructions": "Use the tools.", "temperature": 0.5},
        )
        assert str(run.status) == "queued"
        assert run.metadata == {"source": "e2e"}  # the upstream echoes what reached it
        statuses = [str(run.status)]
        while not run.requires_action:
            run = hook.get_run(run.thread_id, run.id)
            statuses.append(str(run.status))
            assert len(statuses) < 10, statuses
        [call] = run.required_tool_calls
        output = json.dumps({"city": "Paris", "temperature_c": 18})
        after_submit = hook.submit_tool_outputs(run.thread_id, run.id, {call.id: output})
        assert str(after_submit.status) == "queued"
        final = hook.get_run(run.thread_id, run.id)
        while str(final.status) != "completed":
            final = hook.get_run(run.thread_id, run.id)
            statuses.append(str(final.status))
            assert len(statuses) < 20, statuses

    assert statuses[:3] == ["queued", "in_progress", "requires_action"]
    assert upstream.state.runs_created == 1
    create, submit = _posts(forwarded)
    assert create.request.path == "/v1/threads/runs"
    assert create.json() == {
        "assistant_id": ASST_TOOLS,
        "thread": thread,
        "metadata": {"source": "e2e"},
        "instructions": "Use the tools.",
        "temperature": 0.5,
    }
    assert submit.request.path == f"/v1/threads/{run.thread_id}/runs/{run.id}/submit_tool_outputs"
    assert submit.json() == {"tool_outputs": [{"tool_call_id": call.id, "output": output}]}
    for item in forwarded:
        assert item.request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
        assert "assistants=v2" in item.request.headers["openai-beta"]
        assert API_KEY not in json.dumps(item.request.headers)
    # The submitted output landed in the run's tool_calls step.
    steps = upstream.state.list_steps(run.thread_id, run.id) or []
    [tool_step] = [step for step in steps if step["type"] == "tool_calls"]
    assert tool_step["step_details"]["tool_calls"][0]["function"]["output"] == output


def test_hook_cancels_a_run_through_the_gateway(upstream: EmulatorServer, forwarded: list[Forwarded]) -> None:
    with PortkeyHook() as hook:
        run = hook.create_thread_and_run(ASST_SLOW)
        run = hook.get_run(run.thread_id, run.id)
        assert str(run.status) == "in_progress"
        cancelling = hook.cancel_run(run.thread_id, run.id)
        assert str(cancelling.status) == "cancelling"
        cancelled = hook.get_run(run.thread_id, run.id)
    assert str(cancelled.status) == "cancelled"
    assert cancelled.cancelled_at is not None
    assert upstream.state.runs_created == 1
    create, cancel = _posts(forwarded)
    assert create.json() == {"assistant_id": ASST_SLOW}
    assert cancel.request.path == f"/v1/threads/{run.thread_id}/runs/{run.id}/cancel"
    assert cancel.request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert [summary["status"] for summary in upstream.state.runs] == ["cancelled"]


# -- the agent-workflow example DAG under Airflow ----------------------------------------------------------


def test_agent_workflow_dag_answers_its_tool_call_through_the_gateway(
    portkey_gateway: PortkeyGateway, airflow_template_db: Path, tmp_path: Path, forwarded: list[Forwarded]
) -> None:
    with EmulatorServer(mode="openai") as upstream:
        result = run_dag(
            airflow_template_db,
            tmp_path / "agent",
            DAG_ID,
            connection=_connection(portkey_gateway, upstream),
            conf={"assistant_id": ASST_TOOLS},
        )
        runs = upstream.state.runs
        requests = upstream.state.requests
        runs_created = upstream.state.runs_created
        [summary] = runs
        steps = upstream.state.list_steps(summary["thread_id"], summary["id"]) or []

    assert (result.returncode, result.run_state) == (0, "success"), result.describe()
    assert result.states() == TOOL_PATH_STATES
    assert "wait_for_run" in result.deferred_tasks, result.describe()
    assert runs_created == 1
    assert summary["status"] == "completed"
    call, output = computed_tool_output(result)
    # The upstream received the submitted output: it is in the run's tool_calls step.
    [tool_step] = [step for step in steps if step["type"] == "tool_calls"]
    assert tool_step["step_details"]["tool_calls"][0]["function"]["output"] == output
    assert [step["type"] for step in result.xcom("list_steps")] == ["tool_calls", "message_creation"]
    [submit] = [item for item in _posts(forwarded) if item.request.path.endswith("/submit_tool_outputs")]
    assert submit.json() == {"tool_outputs": [{"tool_call_id": call["id"], "output": output}]}
    assert {r.headers["authorization"] for r in requests} == {f"Bearer {PROVIDER_KEY}"}
    assert_no_secret(without_mask_secret_requests(result.output), result.xcoms)
    assert result.python_warnings() == []
