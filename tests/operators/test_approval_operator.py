"""ApproveToolCallsOperator against the emulator: what each answer does to the run, and the feedback.

The wait itself (the "Required actions" page, the REST answer, the resume) needs a real deployment:
``tests/deployment`` runs the example DAG there. Here ``execute_complete`` gets the event Airflow
hands a resumed task, after the calls were pushed to XCom as ``execute`` pushes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import ASST_DEMO, ASST_TOOLS, EmulatorServer
from airflow_provider_portkey.errors import PortkeyConfigurationError, PortkeyError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models import Run, RunStatus
from airflow_provider_portkey.operators.approval import (
    DECISION_XCOM_KEY,
    TOOL_CALLS_XCOM_KEY,
    ApproveToolCallsOperator,
    describe_tool_calls,
)
from tests.sensors.support import FakeTaskInstance, log_text, make_context
from tests.support.airflow_compat import AIRFLOW_VERSION
from tests.support.secrets import assert_no_secret

HAS_HITL = AIRFLOW_VERSION.release >= (3, 1)
needs_hitl = pytest.mark.skipif(not HAS_HITL, reason="Airflow 3.0: see the parse-error test below")
pytestmark = pytest.mark.usefixtures("portkey_conn")

TRACE = "trace-of-the-create-task"


@dataclass
class PullingTaskInstance(FakeTaskInstance):
    """A task instance that reads back what this task pushed (as a resumed task does)."""

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        return self.pushed.get(key)


def requires_action_run() -> Run:
    with PortkeyHook() as hook:
        run = hook.create_thread_and_run(ASST_TOOLS)
        for _ in range(10):
            if run.requires_action:
                return run
            run = hook.get_run(run.thread_id, run.id)
    raise AssertionError(f"never requires_action: {run.describe()}")


def approval(run: Run, **kwargs: Any) -> ApproveToolCallsOperator:
    with DAG("approval_tests", schedule=None):
        return ApproveToolCallsOperator(task_id="approve", thread_id=run.thread_id, run_id=run.id, **kwargs)


def resume(
    operator: ApproveToolCallsOperator,
    run: Run,
    option: str,
    params_input: dict[str, Any] | None = None,
    shown: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], PullingTaskInstance]:
    """What Airflow does after the answer: ``execute_complete`` with the response as the event."""
    ti = PullingTaskInstance()
    calls = run.to_json()["required_action"]["submit_tool_outputs"]["tool_calls"]
    ti.pushed[TOOL_CALLS_XCOM_KEY] = calls if shown is None else shown
    event = {
        "chosen_options": [option],
        "params_input": params_input or {},
        "responded_at": datetime.now(UTC),
        "responded_by_user": {"id": "7", "name": "ada"},
    }
    return operator.execute_complete(make_context(ti), event), ti


def submit_requests(emulator: EmulatorServer) -> int:
    return len([r for r in emulator.state.requests if r.path.endswith("/submit_tool_outputs")])


def outputs(run: Run) -> dict[str, str | None]:
    """The output each tool call of ``run`` got, read back from its steps."""
    with PortkeyHook() as hook:
        steps = [step.to_json() for step in hook.list_run_steps(run.thread_id, run.id)]
    return {
        call["id"]: call["function"]["output"]
        for step in steps
        if step["type"] == "tool_calls"
        for call in step["step_details"]["tool_calls"]
    }


@needs_hitl
def test_approve_runs_the_callable_after_approval_and_submits_its_outputs(emulator: EmulatorServer) -> None:
    run = requires_action_run()
    seen: list[list[dict[str, Any]]] = []

    def tools(calls: list[dict[str, Any]], context: Any) -> dict[str, str]:
        seen.append(calls)
        return {call["id"]: "18C" for call in calls}

    result, ti = resume(approval(run, tool_outputs_callable=tools), run, ApproveToolCallsOperator.APPROVE)
    [call] = run.required_tool_calls
    assert [[c["function"]["name"] for c in calls] for calls in seen] == [["get_weather"]]
    assert outputs(run) == {call.id: "18C"}
    assert result["status"] == "queued"
    assert ti.pushed[DECISION_XCOM_KEY] == {
        "decision": "approved",
        "chosen_option": "Approve",
        "responded_by": "ada",
        "tool_call_ids": [call.id],
    }


@needs_hitl
def test_approve_without_a_callable_submits_what_the_person_typed(emulator: EmulatorServer) -> None:
    run = requires_action_run()
    [call] = run.required_tool_calls
    typed = {"tool_outputs": {call.id: {"temperature_c": 18}}, "comment": ""}
    resume(approval(run), run, ApproveToolCallsOperator.APPROVE, typed)
    assert outputs(run) == {call.id: '{"temperature_c": 18}'}


@needs_hitl
def test_approve_with_outputs_for_other_calls_fails_and_sends_nothing(emulator: EmulatorServer) -> None:
    run = requires_action_run()
    with pytest.raises(PortkeyConfigurationError, match="missing"):
        resume(
            approval(run, tool_outputs_callable=lambda calls, context: {"call_other": "x"}), run, "Approve"
        )
    assert submit_requests(emulator) == 0


@needs_hitl
def test_refuse_answers_every_call_with_the_comment_or_the_refusal(emulator: EmulatorServer) -> None:
    run = requires_action_run()
    [call] = run.required_tool_calls
    resume(approval(run), run, ApproveToolCallsOperator.REFUSE, {"comment": "Not Paris.", "tool_outputs": {}})
    other = requires_action_run()
    [other_call] = other.required_tool_calls
    resume(approval(other, refusal_output="No."), other, ApproveToolCallsOperator.REFUSE)
    assert (outputs(run), outputs(other)) == ({call.id: "Not Paris."}, {other_call.id: "No."})


@needs_hitl
def test_cancel_cancels_the_run_and_submits_nothing(emulator: EmulatorServer) -> None:
    run = requires_action_run()
    result, ti = resume(approval(run), run, ApproveToolCallsOperator.CANCEL)
    assert result["status"] == RunStatus.CANCELLING
    assert submit_requests(emulator) == 0
    assert ti.pushed[DECISION_XCOM_KEY]["decision"] == "cancelled"


@needs_hitl
def test_a_run_that_moved_on_while_waiting_is_left_alone(emulator: EmulatorServer) -> None:
    run = requires_action_run()
    shown = [{"id": "call_shown_earlier", "type": "function", "function": {"name": "x", "arguments": "{}"}}]
    with pytest.raises(PortkeyError, match="no longer waits on the tool calls shown"):
        resume(approval(run), run, ApproveToolCallsOperator.APPROVE, shown=shown)
    assert submit_requests(emulator) == 0


@needs_hitl
def test_the_decision_is_recorded_as_portkey_feedback_when_asked(emulator: EmulatorServer) -> None:
    run = requires_action_run()
    operator = approval(run, record_feedback=True, feedback_trace_id=TRACE, feedback_weight=0.5)
    resume(operator, run, ApproveToolCallsOperator.CANCEL, {"comment": "wrong city", "tool_outputs": {}})
    [feedback] = emulator.state.feedback.items
    assert {key: feedback[key] for key in ("trace_id", "value", "weight")} == {
        "trace_id": TRACE,
        "value": -1,
        "weight": 0.5,
    }
    assert feedback["metadata"] == {
        "decision": "cancelled",
        "thread_id": run.thread_id,
        "agent_run_id": run.id,
        "tool_calls": "get_weather",
        "_user": "ada",
        "comment": "wrong city",
    }
    [request] = [r for r in emulator.state.requests if r.path == "/v1/feedback"]
    assert_no_secret(json.dumps(feedback))
    assert request.method == "POST"


@needs_hitl
def test_no_feedback_unless_asked(emulator: EmulatorServer) -> None:
    run = requires_action_run()
    resume(
        approval(run, tool_outputs_callable=lambda calls, context: {c["id"]: "x" for c in calls}),
        run,
        "Approve",
    )
    assert emulator.state.feedback.items == []


@needs_hitl
def test_a_failed_feedback_is_logged_and_the_decision_stands(
    emulator: EmulatorServer, debug_logs: list[dict[str, Any]]
) -> None:
    run = requires_action_run()
    emulator.state.add_fault("status", path_contains="/v1/feedback", status=400)
    result, ti = resume(
        approval(run, record_feedback=True, feedback_trace_id=TRACE), run, "Reject: tell the agent"
    )
    assert result["status"] == "queued"
    assert ti.pushed[DECISION_XCOM_KEY]["decision"] == "refused"
    text = log_text(debug_logs, "warning")
    assert "Could not record the decision as Portkey feedback on trace-of-the-create-task" in text
    assert_no_secret(text)


@needs_hitl
def test_a_run_not_waiting_for_tool_outputs_is_refused_before_asking_anyone(emulator: EmulatorServer) -> None:
    with PortkeyHook() as hook:
        run = hook.create_thread_and_run(ASST_DEMO)
    with pytest.raises(PortkeyError, match="Nothing to approve"):
        approval(run).execute(make_context(PullingTaskInstance()))


@needs_hitl
@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"reject_with": "ignore"}, "reject_with has 'ignore'"),
        ({"options": ["Yes"]}, "options is set by ApproveToolCallsOperator"),
        ({"tool_outputs_callable": "run_tools"}, "tool_outputs_callable must be callable"),
        ({"feedback_weight": 2}, "weight must be a number from 0 to 1"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(arguments: dict[str, Any], named: str) -> None:
    run = Run.from_api({"id": "run_1", "thread_id": "thread_1", "status": "requires_action"})
    with pytest.raises(PortkeyConfigurationError, match=named):
        approval(run, **arguments)


@needs_hitl
def test_the_person_is_offered_approve_and_the_chosen_rejections() -> None:
    run = Run.from_api({"id": "run_1", "thread_id": "thread_1", "status": "requires_action"})
    assert approval(run).options == ["Approve", "Reject: tell the agent", "Reject: cancel the run"]
    assert approval(run, reject_with="cancel").options == ["Approve", "Reject: cancel the run"]
    assert set(approval(run).params) == {"comment", "tool_outputs"}
    assert set(approval(run, tool_outputs_callable=lambda calls, context: {}).params) == {"comment"}


def test_tool_calls_are_shown_with_names_ids_and_pretty_arguments() -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "shell", "arguments": "not json ```"}},
    ]
    text = describe_tool_calls(calls)
    assert '**1. `get_weather`** (id `call_1`)\n\n```json\n{\n  "city": "Paris"\n}\n```' in text
    assert "**2. `shell`** (id `call_2`)\n\n````text\nnot json ```\n````" in text


@pytest.mark.skipif(HAS_HITL, reason="only Airflow 3.0 lacks human-in-the-loop")
def test_on_airflow_3_0_building_the_task_fails_naming_the_versions_needed() -> None:
    run = Run.from_api({"id": "run_1", "thread_id": "thread_1", "status": "requires_action"})
    with pytest.raises(
        PortkeyConfigurationError, match=r"needs Airflow >= 3\.1 with apache-airflow-providers-standard"
    ):
        approval(run)
