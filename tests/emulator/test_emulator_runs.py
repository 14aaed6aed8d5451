"""The run endpoints over real sockets: create, retrieve, cancel, submit tool outputs, the run's steps."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_portkey.emulator import (
    ASST_DEMO,
    ASST_SLOW,
    ASST_TOOLS,
    SEED_THREAD_ID,
    EmulatorServer,
)
from tests.emulator.conftest import OPENAI_HEADERS, RunApi

# The fields of a live run, in the order the API sends them.
RUN_FIELDS = [
    "id",
    "object",
    "created_at",
    "assistant_id",
    "thread_id",
    "status",
    "started_at",
    "expires_at",
    "cancelled_at",
    "failed_at",
    "completed_at",
    "required_action",
    "last_error",
    "model",
    "instructions",
    "tools",
    "tool_resources",
    "metadata",
    "temperature",
    "top_p",
    "reasoning_effort",
    "max_completion_tokens",
    "max_prompt_tokens",
    "truncation_strategy",
    "incomplete_details",
    "usage",
    "response_format",
    "tool_choice",
    "parallel_tool_calls",
]


def test_create_thread_and_run_returns_a_queued_run_in_the_live_shape(runs: RunApi) -> None:
    run = runs.create(thread={"messages": [{"role": "user", "content": "Hello"}]})
    assert list(run) == RUN_FIELDS
    assert run["object"] == "thread.run"
    assert run["id"].startswith("run_")
    assert run["thread_id"].startswith("thread_")
    assert run["assistant_id"] == ASST_DEMO
    assert run["status"] == "queued"
    assert run["started_at"] is None
    assert run["expires_at"] == run["created_at"] + 600
    assert run["cancelled_at"] is run["failed_at"] is run["completed_at"] is None
    assert run["required_action"] is run["last_error"] is run["usage"] is run["incomplete_details"] is None
    assert run["model"] == "gpt-4o"
    assert run["tools"] == []
    assert run["metadata"] == {}
    assert run["truncation_strategy"] == {"type": "auto", "last_messages": None}
    assert (run["response_format"], run["tool_choice"], run["parallel_tool_calls"]) == ("auto", "auto", True)


def test_each_create_makes_a_new_thread_and_run(runs: RunApi) -> None:
    first, second = runs.create(), runs.create()
    assert first["id"] != second["id"]
    assert first["thread_id"] != second["thread_id"]


def test_run_echoes_the_request_fields(runs: RunApi) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    run = runs.create(
        model="gpt-4o-mini",
        instructions="Be brief.",
        tools=[tool],
        metadata={"dag_id": "demo", "task_id": "start"},
        temperature=0.2,
        top_p=0.9,
        max_completion_tokens=512,
    )
    assert run["model"] == "gpt-4o-mini"
    assert run["instructions"] == "Be brief."
    assert run["tools"] == [tool]
    assert run["metadata"] == {"dag_id": "demo", "task_id": "start"}
    assert (run["temperature"], run["top_p"], run["max_completion_tokens"]) == (0.2, 0.9, 512)
    assert runs.get(run)["metadata"] == {"dag_id": "demo", "task_id": "start"}


def test_create_run_on_an_existing_thread(runs: RunApi) -> None:
    first = runs.create()
    runs.poll(first, 2)  # completed: the thread is free again
    response = runs.create_on(first["thread_id"], ASST_TOOLS)
    assert response.status_code == 200
    run = response.json()
    assert (run["thread_id"], run["assistant_id"], run["status"]) == (
        first["thread_id"],
        ASST_TOOLS,
        "queued",
    )
    assert run["id"] != first["id"]


def test_create_run_on_the_seeded_thread(runs: RunApi) -> None:
    response = runs.create_on(SEED_THREAD_ID)
    assert response.status_code == 200
    assert response.json()["thread_id"] == SEED_THREAD_ID


def test_create_run_on_an_unknown_thread_is_404(runs: RunApi) -> None:
    response = runs.create_on("thread_nope")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No thread found with id 'thread_nope'."


def test_a_thread_with_an_active_run_refuses_another(server: EmulatorServer, runs: RunApi) -> None:
    run = runs.create(ASST_SLOW)
    response = runs.create_on(run["thread_id"])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == f"Thread {run['thread_id']} already has an active run {run['id']}."
    assert set(error) == {"message", "type", "param", "code"}
    assert server.state.runs_created == 1


def test_get_run_advances_one_status_per_poll(runs: RunApi) -> None:
    run = runs.create()
    assert runs.poll(run, 4) == ["in_progress", "completed", "completed", "completed"]


def test_unknown_run_is_404_in_the_step_endpoints_wording(client: httpx.Client, runs: RunApi) -> None:
    run = runs.create()
    for path in (
        f"/threads/{run['thread_id']}/runs/run_nope",
        f"/threads/thread_nope/runs/{run['id']}",
        "/threads/thread_demo/runs/run_demo",  # scripted steps only: no run object
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        run_id = path.rsplit("/", 1)[1]
        assert response.json()["error"]["message"] == f"No run found with id '{run_id}'."
    assert client.post("/threads/t/runs/run_nope/cancel").status_code == 404
    assert (
        client.post("/threads/t/runs/run_nope/submit_tool_outputs", json={"tool_outputs": []}).status_code
        == 404
    )


def test_started_and_completed_at_are_set_as_the_run_moves(runs: RunApi) -> None:
    run = runs.create()
    running = runs.get(run)
    assert running["started_at"] is not None
    assert running["started_at"] >= run["created_at"]
    done = runs.get(run)
    assert done["completed_at"] is not None
    assert done["completed_at"] >= done["started_at"]
    assert done["expires_at"] is None
    assert done["usage"] == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


def test_cancel_moves_to_cancelling_then_cancelled_on_the_next_get(runs: RunApi) -> None:
    run = runs.create(ASST_SLOW)
    runs.poll(run, 3)
    response = runs.cancel(run)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelling"
    assert response.json()["cancelled_at"] is None
    cancelled = runs.get(run)
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] is not None
    assert runs.poll(run, 2) == ["cancelled", "cancelled"]
    assert [step["status"] for step in runs.steps(run)] == ["cancelled"]


def test_cancel_a_queued_run(runs: RunApi) -> None:
    run = runs.create()
    assert runs.cancel(run).json()["status"] == "cancelling"
    assert runs.get(run)["status"] == "cancelled"
    assert runs.steps(run) == []  # it never started


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_cancelling_an_ended_run_is_a_400(runs: RunApi, status: str) -> None:
    run = runs.create()
    if status == "cancelled":
        runs.cancel(run)
    while runs.get(run)["status"] != status:
        pass
    response = runs.cancel(run)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": f"Cannot cancel run with status '{status}'.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_cancelling_twice_is_a_400(runs: RunApi) -> None:
    run = runs.create(ASST_SLOW)
    runs.cancel(run)
    response = runs.cancel(run)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Cannot cancel run with status 'cancelling'."


def test_cancel_while_requires_action_cancels_the_waiting_tool_step(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    assert runs.poll(run, 2) == ["in_progress", "requires_action"]
    assert runs.cancel(run).json()["required_action"] is None
    assert runs.get(run)["status"] == "cancelled"
    (step,) = runs.steps(run)
    assert step["status"] == "cancelled"
    assert step["step_details"]["tool_calls"][0]["function"]["output"] is None


def test_submit_tool_outputs_continues_the_run(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    waiting = [runs.get(run) for _ in range(2)][-1]
    (call,) = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]

    response = runs.submit(run, [{"tool_call_id": call["id"], "output": "18C and sunny"}])

    assert response.status_code == 200
    assert response.json()["status"] == "queued"
    assert response.json()["required_action"] is None
    assert runs.poll(run, 3) == ["in_progress", "completed", "completed"]
    tool_step, message_step = runs.steps(run)
    assert tool_step["status"] == "completed"
    assert tool_step["step_details"]["tool_calls"][0]["function"]["output"] == "18C and sunny"
    assert message_step["type"] == "message_creation"
    assert message_step["status"] == "completed"


def test_submit_tool_outputs_needs_a_run_that_requires_action(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    response = runs.submit(run, [{"tool_call_id": "call_x", "output": "x"}])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == 'Runs in status "queued" do not accept tool outputs.'


def test_submit_tool_outputs_must_answer_every_pending_call(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    waiting = [runs.get(run) for _ in range(2)][-1]
    (call,) = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]

    response = runs.submit(run, [])

    assert response.status_code == 400
    error = response.json()["error"]
    assert call["id"] in error["message"]
    assert error["param"] == "tool_outputs"
    assert runs.get(run)["status"] == "requires_action"  # nothing changed


def test_submit_tool_outputs_rejects_an_unknown_call_id(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    runs.poll(run, 2)
    response = runs.submit(run, [{"tool_call_id": "call_unknown", "output": "x"}])
    assert response.status_code == 400
    assert "call_unknown" in response.json()["error"]["message"]
    assert response.json()["error"]["param"] == "tool_outputs[0].tool_call_id"


def test_steps_of_a_run_are_listed_and_retrieved_as_it_creates_them(
    runs: RunApi, client: httpx.Client
) -> None:
    run = runs.create()
    assert runs.steps(run) == []
    runs.get(run)
    (step,) = runs.steps(run)
    assert (step["run_id"], step["thread_id"], step["assistant_id"]) == (
        run["id"],
        run["thread_id"],
        ASST_DEMO,
    )
    assert step["status"] == "in_progress"
    assert step["usage"] is None
    assert step["expires_at"] == step["created_at"] + 600
    # Retrieving or listing steps does not move a poll-advanced run.
    assert client.get(runs.path(run, f"/steps/{step['id']}")).json()["status"] == "in_progress"
    assert runs.steps(run)[0]["status"] == "in_progress"
    runs.get(run)
    retrieved = client.get(runs.path(run, f"/steps/{step['id']}")).json()
    assert retrieved["status"] == "completed"
    assert retrieved["completed_at"] is not None
    assert retrieved == runs.steps(run)[0]


def test_unknown_step_of_a_run_is_404(runs: RunApi, client: httpx.Client) -> None:
    run = runs.create()
    response = client.get(runs.path(run, "/steps/step_nope"))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No run step found with id 'step_nope'."


def test_steps_list_in_creation_order_with_increasing_created_at(runs: RunApi) -> None:
    run = runs.create(ASST_TOOLS)
    runs.poll(run, 2)
    call_id = runs.steps(run)[0]["step_details"]["tool_calls"][0]["id"]
    runs.submit(run, [{"tool_call_id": call_id, "output": "ok"}])
    runs.poll(run, 2)
    oldest_first = runs.steps(run)
    newest_first = runs.steps(run, order="desc")
    assert [step["type"] for step in oldest_first] == ["tool_calls", "message_creation"]
    assert oldest_first[0]["created_at"] < oldest_first[1]["created_at"]
    assert newest_first == oldest_first[::-1]


def test_run_endpoints_need_the_beta_header(client: httpx.Client) -> None:
    response = client.post("/threads/runs", json={"assistant_id": ASST_DEMO}, headers={"OpenAI-Beta": ""})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_beta"


def test_run_endpoints_check_portkey_auth_first(server: EmulatorServer, bare_client: httpx.Client) -> None:
    response = bare_client.post("/threads/runs", json={"assistant_id": ASST_DEMO})
    assert response.status_code == 401
    assert response.json() == {"status": "failure", "message": "Portkey API Key Not Found"}
    assert server.state.runs_created == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/threads/runs"), ("DELETE", "/threads/t/runs/r"), ("GET", "/threads/t/runs/r/cancel")],
)
def test_wrong_method_or_path_is_404_invalid_url(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"Invalid URL ({method} /v1{path})"


def test_openai_mode_serves_runs_without_portkey_headers(openai_server: EmulatorServer) -> None:
    with httpx.Client(base_url=openai_server.base_url, headers=OPENAI_HEADERS) as http:
        run = RunApi(http).create()
        assert RunApi(http).get(run)["status"] == "in_progress"


def test_portkey_mode_echoes_the_trace_id_on_run_responses(client: httpx.Client) -> None:
    response = client.post(
        "/threads/runs", json={"assistant_id": ASST_DEMO}, headers={"x-portkey-trace-id": "dag.run.task"}
    )
    assert response.headers["x-portkey-trace-id"] == "dag.run.task"
    assert response.headers["x-request-id"].startswith("req_")
