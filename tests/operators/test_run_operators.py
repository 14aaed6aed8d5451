"""CreateRunOperator, ListRunStepsOperator and SubmitToolOutputsOperator against the emulator.

Direct ``execute`` calls for each behaviour, and real ``dag.test()`` runs for what only a task run
shows: templating from upstream XComs, the trace id and metadata on the wire, the logs link.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from airflow.sdk import DAG, XComArg, task

from airflow_provider_portkey.emulator import ASST_DEMO, ASST_SLOW, ASST_TOOLS, EmulatorServer
from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyConfigurationError,
    PortkeyConnectionError,
    PortkeyError,
)
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models import Run, RunStatus
from airflow_provider_portkey.operators.run import (
    RUN_ID_XCOM_KEY,
    STEP_IDS_XCOM_KEY,
    THREAD_ID_XCOM_KEY,
    CreateRunOperator,
    ListRunStepsOperator,
    SubmitToolOutputsOperator,
)
from airflow_provider_portkey.tracing import PortkeyLogsLink
from tests.sensors.dagrun import AirflowRuntime
from tests.sensors.support import FakeTaskInstance, log_text, make_context
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.usefixtures("portkey_conn")

USER_MESSAGE = {"role": "user", "content": "What is the weather in Paris?"}
LINK_KEY = PortkeyLogsLink().xcom_key


_Op = TypeVar("_Op")


def in_dag(make: Callable[[], _Op]) -> _Op:
    with DAG("run_operator_tests", schedule=None):
        return make()


def create(**kwargs: Any) -> CreateRunOperator:
    return in_dag(lambda: CreateRunOperator(task_id="start", **{"assistant_id": ASST_DEMO, **kwargs}))


def poll_until(run: Run, status: RunStatus) -> Run:
    with PortkeyHook() as hook:
        for _ in range(10):
            if run.status is status:
                return run
            run = hook.get_run(run.thread_id, run.id)
    raise AssertionError(f"run never became {status}: {run.describe()}")


def finished_tools_run() -> Run:
    """An asst_tools run taken through requires_action to completed: two steps of each type."""
    with PortkeyHook() as hook:
        run = poll_until(hook.create_thread_and_run(ASST_TOOLS), RunStatus.REQUIRES_ACTION)
        hook.submit_tool_outputs(run.thread_id, run.id, {c.id: "18C" for c in run.required_tool_calls})
    return poll_until(run, RunStatus.COMPLETED)


# -- CreateRunOperator ---------------------------------------------------------------------------------------


def test_create_starts_a_thread_and_run_returns_it_and_pushes_its_ids(emulator: EmulatorServer) -> None:
    ti = FakeTaskInstance()
    result = create(thread={"messages": [USER_MESSAGE]}, metadata={"ticket": "7"}).execute(make_context(ti))
    assert (result["object"], result["status"], result["metadata"]) == (
        "thread.run",
        "queued",
        {"ticket": "7"},
    )
    assert ti.pushed == {THREAD_ID_XCOM_KEY: result["thread_id"], RUN_ID_XCOM_KEY: result["id"]}
    assert emulator.state.runs_created == 1


def test_create_on_an_existing_thread_adds_messages_and_run_options(emulator: EmulatorServer) -> None:
    first = create().execute(make_context())
    poll_until(Run.from_api(first), RunStatus.COMPLETED)
    second = create(
        thread_id=first["thread_id"],
        additional_messages=[USER_MESSAGE],
        run_options={"model": "gpt-4o-mini", "instructions": None},
    ).execute(make_context())
    assert second["thread_id"] == first["thread_id"]
    assert second["model"] == "gpt-4o-mini"
    [request] = [r for r in emulator.state.requests if r.path == f"/v1/threads/{first['thread_id']}/runs"]
    assert request.method == "POST"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"additional_messages": [USER_MESSAGE]}, "additional_messages needs thread_id"),
        ({"thread_id": "thread_1", "thread": {"messages": [USER_MESSAGE]}}, "with thread_id use"),
        ({"thread_id": "None"}, "thread_id"),
        ({"assistant_id": ""}, "assistant_id"),
        ({"run_options": {"metadata": {}}}, "options['metadata']"),
    ],
)
def test_create_refuses_bad_arguments_before_any_request(
    emulator: EmulatorServer, arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(PortkeyConfigurationError) as caught:
        create(**arguments).execute(make_context())
    assert named in str(caught.value)
    assert emulator.state.requests == []


def test_create_fails_without_a_retry_when_the_run_may_exist(
    emulator: EmulatorServer, sleeps: list[float]
) -> None:
    emulator.state.add_fault("reset_after", path_contains="/threads/runs")
    with pytest.raises(PortkeyConnectionError):
        create().execute(make_context())
    assert (emulator.state.runs_created, sleeps) == (1, [])


def test_on_kill_cancels_the_run_the_task_started(emulator: EmulatorServer) -> None:
    operator = create(assistant_id=ASST_SLOW)
    started = operator.execute(make_context())
    operator.on_kill()
    [summary] = emulator.state.runs
    assert summary["status"] in ("cancelling", "cancelled")
    assert ("POST", f"/v1/threads/{started['thread_id']}/runs/{started['id']}/cancel") in [
        (r.method, r.path) for r in emulator.state.requests
    ]


def test_on_kill_leaves_a_finished_run_and_an_unstarted_task_alone(emulator: EmulatorServer) -> None:
    create().on_kill()  # never started: nothing to cancel, no request
    assert emulator.state.requests == []
    operator = create()
    poll_until(Run.from_api(operator.execute(make_context())), RunStatus.COMPLETED)
    operator.on_kill()
    assert not [r for r in emulator.state.requests if r.path.endswith("/cancel")]


def test_on_kill_never_raises_when_the_cancel_fails(emulator: EmulatorServer) -> None:
    operator = create(assistant_id=ASST_SLOW)
    operator.execute(make_context())
    emulator.state.add_fault("status", path_contains="/runs/", status=401)
    operator.on_kill()


def test_on_kill_can_be_switched_off(emulator: EmulatorServer) -> None:
    operator = create(assistant_id=ASST_SLOW, cancel_on_kill=False)
    operator.execute(make_context())
    operator.on_kill()
    assert emulator.state.request_count == 1


# -- ListRunStepsOperator ----------------------------------------------------------------------------------


def list_steps(run: Run, **kwargs: Any) -> ListRunStepsOperator:
    return in_dag(
        lambda: ListRunStepsOperator(task_id="list_steps", thread_id=run.thread_id, run_id=run.id, **kwargs)
    )


def test_list_returns_every_step_oldest_first_and_pushes_their_ids(emulator: EmulatorServer) -> None:
    run = finished_tools_run()
    ti = FakeTaskInstance()
    steps = list_steps(run).execute(make_context(ti))
    assert [step["type"] for step in steps] == ["tool_calls", "message_creation"]
    assert steps == emulator.state.list_steps(run.thread_id, run.id)
    assert ti.pushed[STEP_IDS_XCOM_KEY] == [step["id"] for step in steps]


def test_list_pushes_and_logs_the_runs_usage_summed_over_all_its_steps(debug_logs: list[Any]) -> None:
    run = finished_tools_run()
    ti = FakeTaskInstance()
    steps = list_steps(run, step_types="tool_calls").execute(make_context(ti))
    assert len(steps) == 1  # the filter does not change what the run used
    every_step = list_steps(run).execute(make_context())
    expected = {
        field: sum(step["usage"][field] for step in every_step)
        for field in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    assert expected["total_tokens"] > 0
    assert ti.pushed["usage"] == expected
    assert f"Token usage of run {run.id}" in log_text(debug_logs)


def test_list_pushes_no_usage_while_no_step_has_any(emulator: EmulatorServer) -> None:
    with PortkeyHook() as hook:
        run = hook.create_thread_and_run(ASST_SLOW)
        hook.get_run(run.thread_id, run.id)  # the message_creation step opens, without usage
    ti = FakeTaskInstance()
    assert list_steps(run).execute(make_context(ti))
    assert "usage" not in ti.pushed


def test_list_filters_by_type_and_status_orders_and_limits() -> None:
    run = finished_tools_run()
    newest_first = list_steps(run, order="desc").execute(make_context())
    assert [step["type"] for step in newest_first] == ["message_creation", "tool_calls"]
    assert [s["type"] for s in list_steps(run, step_types="tool_calls").execute(make_context())] == [
        "tool_calls"
    ]
    assert list_steps(run, statuses=["failed", "expired"]).execute(make_context()) == []
    assert list_steps(run, order="desc", limit=1).execute(make_context()) == newest_first[:1]


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"statuses": "done"}, "statuses"),
        ({"step_types": ["retrieval"]}, "step_types"),
        ({"order": "up"}, "order"),
    ],
)
def test_list_refuses_bad_filters_before_any_request(
    emulator: EmulatorServer, arguments: dict[str, Any], named: str
) -> None:
    run = Run.from_api(
        {"id": "run_1", "object": "thread.run", "status": "completed", "thread_id": "thread_1"}
    )
    with pytest.raises(PortkeyConfigurationError, match=named):
        list_steps(run, **arguments).execute(make_context())
    assert emulator.state.requests == []


def test_list_refuses_a_bad_limit_when_the_dag_is_parsed() -> None:
    with pytest.raises(PortkeyConfigurationError, match="limit"):
        list_steps(
            Run.from_api({"id": "r", "object": "thread.run", "status": "queued", "thread_id": "t"}), limit=0
        )


# -- SubmitToolOutputsOperator ------------------------------------------------------------------------------


def waiting_run() -> Run:
    with PortkeyHook() as hook:
        return poll_until(hook.create_thread_and_run(ASST_TOOLS), RunStatus.REQUIRES_ACTION)


def submit(run: Run, tool_outputs: Any) -> SubmitToolOutputsOperator:
    return in_dag(
        lambda: SubmitToolOutputsOperator(
            task_id="submit", thread_id=run.thread_id, run_id=run.id, tool_outputs=tool_outputs
        )
    )


def test_submit_answers_the_calls_and_returns_the_resumed_run() -> None:
    run = waiting_run()
    [call] = run.required_tool_calls
    result = submit(run, [{"tool_call_id": call.id, "output": "18C"}]).execute(make_context())
    assert (result["id"], result["status"]) == (run.id, "queued")
    assert poll_until(Run.from_api(result), RunStatus.COMPLETED).succeeded


def test_submit_refuses_outputs_that_do_not_match_the_calls_and_sends_nothing(
    emulator: EmulatorServer,
) -> None:
    run = waiting_run()
    [call] = run.required_tool_calls
    with pytest.raises(PortkeyConfigurationError) as caught:
        submit(run, {call.id: "18C", "call_other": "x"}).execute(make_context())
    assert "unexpected ['call_other']" in str(caught.value)
    assert not [r for r in emulator.state.requests if r.path.endswith("/submit_tool_outputs")]


def test_submit_refuses_a_run_that_does_not_require_action(emulator: EmulatorServer) -> None:
    run = Run.from_api(create().execute(make_context()))
    with pytest.raises(PortkeyError, match="not requires_action"):
        submit(run, {"call_1": "x"}).execute(make_context())
    assert not [r for r in emulator.state.requests if r.path.endswith("/submit_tool_outputs")]


@pytest.mark.parametrize(
    ("tool_outputs", "error"),
    [
        ({"call_1": {"temp": 18}}, PortkeyConfigurationError),
        ({"../x": "y"}, InvalidIdError),
        ([], ValueError),
    ],
)
def test_submit_refuses_bad_outputs_before_any_request(
    emulator: EmulatorServer, tool_outputs: Any, error: type[Exception]
) -> None:
    run = Run.from_api({"id": "run_1", "object": "thread.run", "status": "queued", "thread_id": "thread_1"})
    with pytest.raises(error):
        submit(run, tool_outputs).execute(make_context())
    assert emulator.state.requests == []


# -- in a DAG run ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("sleeps")
def test_in_a_dag_ids_template_downstream_and_every_request_carries_the_task_trace(
    airflow: AirflowRuntime, emulator: EmulatorServer
) -> None:
    with DAG("run_operators_in_a_dag", schedule=None) as dag:
        start = CreateRunOperator(task_id="start", assistant_id=ASST_TOOLS)

        @task
        def wait(thread: str, run: str) -> None:
            poll_until(
                Run.from_api({"id": run, "object": "thread.run", "status": "queued", "thread_id": thread}),
                RunStatus.REQUIRES_ACTION,
            )

        @task
        def answer(run: dict[str, Any]) -> dict[str, str]:
            with PortkeyHook() as hook:
                waiting = hook.get_run(run["thread_id"], run["id"])
            return {
                call.id: json.dumps({"city": "Paris", "temp_c": 18}) for call in waiting.required_tool_calls
            }

        # XComArgs resolve to the values at run time (mypy cannot model that).
        thread_arg: Any = XComArg(start, key=THREAD_ID_XCOM_KEY)
        run_arg: Any = XComArg(start, key=RUN_ID_XCOM_KEY)
        run_json: Any = start.output
        waited = wait(thread_arg, run_arg)
        outputs = answer(run_json)
        submit_outputs = SubmitToolOutputsOperator(
            task_id="submit",
            thread_id="{{ ti.xcom_pull(task_ids='start', key='thread_id') }}",
            run_id="{{ ti.xcom_pull(task_ids='start', key='run_id') }}",
            tool_outputs=outputs,
        )
        steps = ListRunStepsOperator(
            task_id="list_steps",
            thread_id="{{ ti.xcom_pull(task_ids='start', key='thread_id') }}",
            run_id="{{ ti.xcom_pull(task_ids='start', key='run_id') }}",
            step_types="tool_calls",
        )
        waited >> outputs
        submit_outputs >> steps

    result = airflow.run(dag)

    assert set(result.task_states.values()) == {"success"}, result.task_states
    run = result.xcom("start")
    assert result.xcom("start", THREAD_ID_XCOM_KEY) == run["thread_id"]
    assert result.xcom("submit")["status"] == "queued"
    [tool_step] = result.xcom("list_steps")
    assert result.xcom("list_steps", STEP_IDS_XCOM_KEY) == [tool_step["id"]]
    assert result.rendered["submit"]["run_id"] == run["id"]

    by_task: dict[str, set[str]] = {}
    for request in emulator.state.requests:
        metadata = (
            json.loads(request.headers["x-portkey-metadata"])
            if "x-portkey-metadata" in request.headers
            else {}
        )
        if "task_id" in metadata:
            assert metadata["dag_id"] == "run_operators_in_a_dag"
            by_task.setdefault(metadata["task_id"], set()).add(request.headers["x-portkey-trace-id"])
    assert set(by_task) == {"start", "submit", "list_steps"}
    for task_id, traces in by_task.items():
        [trace] = traces  # one trace per task try, every request of the task in it
        assert trace.startswith("airflow/run_operators_in_a_dag/")
        assert trace.endswith(f"/{task_id}/try-1")
        assert result.xcom(task_id, LINK_KEY) == (
            "https://app.portkey.ai/logs?trace_id="
            + trace.replace("/", "%2F").replace(":", "%3A").replace("+", "%2B")
        )
    assert_no_secret(result.xcoms, result.rendered)


@pytest.mark.usefixtures("sleeps")
def test_in_a_dag_the_link_uses_the_connections_app_url_and_fixed_trace_id(
    airflow: AirflowRuntime, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, portkey_conn: Any
) -> None:
    portkey_conn.set(monkeypatch, ui_url="https://portkey.internal/", trace_id="nightly-agents")
    with DAG("run_operators_link", schedule=None) as dag:
        CreateRunOperator(task_id="start", assistant_id=ASST_DEMO)

    result = airflow.run(dag)

    assert result.task_states == {"start": "success"}
    assert result.xcom("start", LINK_KEY) == "https://portkey.internal/logs?trace_id=nightly-agents"
    [request] = emulator.state.requests
    assert request.headers["x-portkey-trace-id"] == "nightly-agents"
