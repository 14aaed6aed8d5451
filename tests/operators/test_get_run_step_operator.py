"""GetRunStepOperator against the live emulator: direct ``execute`` and real ``dag.test()`` runs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk import DAG, task

from airflow_provider_portkey.emulator import (
    SEED_RUN_ID,
    SEED_THREAD_ID,
    STEP_COMPLETES,
    STEP_INSTANT,
    EmulatorServer,
)
from airflow_provider_portkey.errors import InvalidIdError, PortkeyAuthError, PortkeyNotFoundError
from airflow_provider_portkey.operators.run_step import STATUS_XCOM_KEY, GetRunStepOperator
from tests.sensors.dagrun import AirflowRuntime
from tests.sensors.support import FakeTaskInstance, log_text, make_context
from tests.support.secrets import assert_no_secret

pytestmark = pytest.mark.usefixtures("portkey_conn")


def operator(step_id: str = STEP_INSTANT, **kwargs: Any) -> GetRunStepOperator:
    with DAG("get_step_tests", schedule=None):
        return GetRunStepOperator(
            task_id="get_step", thread_id=SEED_THREAD_ID, run_id=SEED_RUN_ID, step_id=step_id, **kwargs
        )


def as_sent(emulator: EmulatorServer, step_id: str) -> dict[str, Any]:
    steps = emulator.state.list_steps(SEED_THREAD_ID, SEED_RUN_ID)
    assert steps is not None
    return next(step for step in steps if step["id"] == step_id)


def test_returns_the_step_json_and_pushes_its_status_under_its_own_key(emulator: EmulatorServer) -> None:
    ti = FakeTaskInstance()

    result = operator().execute(make_context(ti))

    assert result == as_sent(emulator, STEP_INSTANT)
    assert STATUS_XCOM_KEY == "status"
    assert ti.pushed == {"status": "completed"}


def test_does_not_wait_for_a_step_in_progress(emulator: EmulatorServer, sleeps: list[float]) -> None:
    ti = FakeTaskInstance()

    result = operator(STEP_COMPLETES).execute(make_context(ti))

    assert result["status"] == "in_progress"
    assert ti.pushed == {"status": "in_progress"}
    assert emulator.state.request_count == 1
    assert sleeps == []


def test_does_not_fail_on_a_failed_step_it_reports_it(emulator: EmulatorServer) -> None:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_failed", statuses=("failed",))
    ti = FakeTaskInstance()

    result = operator("step_failed").execute(make_context(ti))

    assert result["status"] == "failed"
    assert result["last_error"] == {"code": "server_error", "message": "Sorry, something went wrong."}
    assert ti.pushed == {"status": "failed"}


def test_not_found_fails_with_the_hooks_message_after_one_request(
    emulator: EmulatorServer, sleeps: list[float]
) -> None:
    with pytest.raises(PortkeyNotFoundError, match=r"HTTP 404.*No run step found with id 'step_missing'"):
        operator("step_missing").execute(make_context())

    assert emulator.state.request_count == 1
    assert sleeps == []


def test_unauthorized_fails_with_the_hooks_message_after_one_request(
    emulator: EmulatorServer, sleeps: list[float]
) -> None:
    emulator.state.api_keys = frozenset({"pk-some-other-key"})

    with pytest.raises(PortkeyAuthError, match=r"HTTP 401.*Invalid API Key") as raised:
        operator().execute(make_context())

    assert emulator.state.request_count == 1
    assert sleeps == []
    assert_no_secret(str(raised.value), repr(raised.value))


def test_include_is_passed_through(emulator: EmulatorServer) -> None:
    include = "step_details.tool_calls[*].file_search.results[*].content"

    operator(include=[include]).execute(make_context())

    assert emulator.state.requests[-1].query == [("include[]", include)]


def test_a_none_id_fails_naming_the_parameter_before_any_request(emulator: EmulatorServer) -> None:
    task_ = operator()
    task_.step_id = None  # type: ignore[assignment]

    with pytest.raises(InvalidIdError, match="step_id is None, not an API id"):
        task_.execute(make_context())

    assert emulator.state.request_count == 0


# -- real Airflow runs ---------------------------------------------------------------------------


@pytest.mark.usefixtures("sleeps")
def test_in_a_dag_the_json_is_return_value_and_the_status_its_own_xcom_key(
    airflow: AirflowRuntime, emulator: EmulatorServer
) -> None:
    emulator.state.add_step("thread_x", "run_x", "step_x", statuses=("failed",))
    with DAG("get_step_xcom", schedule=None) as dag:

        @task
        def start_agent() -> dict[str, str]:
            return {"thread": "thread_x", "run": "run_x", "step": "step_x"}

        get_step = GetRunStepOperator(
            task_id="get_step",
            thread_id="{{ ti.xcom_pull(task_ids='start_agent')['thread'] }}",
            run_id="{{ ti.xcom_pull(task_ids='start_agent')['run'] }}",
            step_id="{{ ti.xcom_pull(task_ids='start_agent')['step'] }}",
        )

        @task
        def status_only(ti: Any = None) -> str:
            return str(ti.xcom_pull(task_ids="get_step", key=STATUS_XCOM_KEY))

        start_agent() >> get_step >> status_only()

    result = airflow.run(dag)

    assert result.task_states == {"start_agent": "success", "get_step": "success", "status_only": "success"}
    steps = emulator.state.list_steps("thread_x", "run_x")
    assert steps is not None
    assert result.xcom("get_step") == steps[0]
    assert result.xcom("get_step", STATUS_XCOM_KEY) == "failed"
    assert result.xcom("status_only") == "failed"
    assert result.rendered["get_step"]["step_id"] == "step_x"
    assert_no_secret(result.xcoms, result.rendered)


@pytest.mark.usefixtures("sleeps")
def test_in_a_dag_a_permanent_error_fails_the_task_with_the_hooks_message(
    airflow: AirflowRuntime, emulator: EmulatorServer, debug_logs: list[dict[str, Any]]
) -> None:
    with DAG("get_step_404", schedule=None) as dag:
        GetRunStepOperator(
            task_id="get_step",
            thread_id=SEED_THREAD_ID,
            run_id=SEED_RUN_ID,
            step_id="step_missing",
            retries=0,
            retry_delay=timedelta(0),
        )

    result = airflow.run(dag)

    assert result.task_states == {"get_step": "failed"}
    errors = log_text(debug_logs, "error")
    assert "PortkeyNotFoundError" in errors
    assert "No run step found with id 'step_missing'" in errors
    assert emulator.state.request_count == 1
