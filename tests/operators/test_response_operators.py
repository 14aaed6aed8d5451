"""CreateResponseOperator and GetResponseOperator against the emulator.

Starting without waiting, waiting in poke and deferrable mode (the sensor's mechanism), every
ending, cancel on kill and on timeout, the one-POST rule, and a ``dag.test()`` run with templating.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout
from airflow.sdk import DAG, task

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.emulator.background import MODEL_COMPLETES, MODEL_FAILS, MODEL_SLOW
from airflow_provider_portkey.errors import (
    PortkeyConfigurationError,
    PortkeyConnectionError,
    ResponseUnsuccessfulError,
)
from airflow_provider_portkey.operators.response import CreateResponseOperator, GetResponseOperator
from airflow_provider_portkey.sensors.response import ResponseRetentionWarning
from tests.sensors.dagrun import AirflowRuntime
from tests.sensors.support import FakeClock, FakeTaskInstance, log_text, make_context, run_deferred

pytestmark = pytest.mark.usefixtures("portkey_conn")

BODY = {"model": MODEL_COMPLETES, "input": "What is 2+2?"}
MODES = ("poke", "deferrable")


def create(mode: str = "poke", body: dict[str, Any] | None = None, **kwargs: Any) -> CreateResponseOperator:
    options: dict[str, Any] = {"poke_interval": 5, "timeout": 600, "deferrable": mode == "deferrable"}
    options.update(kwargs)
    with DAG("response_operator_tests", schedule=None):
        return CreateResponseOperator(task_id="ask", body=body or BODY, **options)


def run(operator: CreateResponseOperator, mode: str, ti: FakeTaskInstance) -> Any:
    if mode == "poke" or not operator.wait_for_completion:
        return operator.execute(make_context(ti))
    return run_deferred(operator, make_context(ti))[0]


def posts(emulator: EmulatorServer) -> list[str]:
    return [r.path for r in emulator.state.requests if r.method == "POST"]


def status_of(emulator: EmulatorServer, response_id: str) -> str:
    [summary] = [s for s in emulator.state.responses.summaries if s["id"] == response_id]
    return str(summary["status"])


def test_without_waiting_it_starts_a_background_response_and_pushes_its_id(emulator: EmulatorServer) -> None:
    ti = FakeTaskInstance()
    result = create().execute(make_context(ti))
    assert (result["status"], result["background"]) == ("queued", True)
    assert ti.pushed["response_id"] == result["id"]
    assert ti.pushed["status"] == "queued"
    assert ti.pushed["output_text"] == ""
    assert posts(emulator) == ["/v1/responses"]


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize("mode", MODES)
def test_waiting_returns_the_final_response_after_one_post(emulator: EmulatorServer, mode: str) -> None:
    ti = FakeTaskInstance()
    result = run(create(mode, wait_for_completion=True), mode, ti)
    assert result["status"] == "completed"
    assert ti.pushed["response_id"] == result["id"]
    assert ti.pushed["output_text"] == "Emulated answer to: What is 2+2?"
    assert ti.pushed["usage"] == result["usage"]
    assert posts(emulator) == ["/v1/responses"]


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize("mode", MODES)
def test_waiting_on_a_failing_response_fails_the_task_with_its_error(mode: str) -> None:
    operator = create(mode, {**BODY, "model": MODEL_FAILS}, wait_for_completion=True)
    with pytest.raises(ResponseUnsuccessfulError, match="is failed: server_error"):
        run(operator, mode, FakeTaskInstance())


def test_without_background_the_final_answer_is_returned_at_once(emulator: EmulatorServer) -> None:
    ti = FakeTaskInstance()
    result = create(background=False, wait_for_completion=True).execute(make_context(ti))
    assert (result["status"], ti.pushed["status"]) == ("completed", "completed")
    assert [r.method for r in emulator.state.requests] == ["POST"]


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_cancels_the_response(emulator: EmulatorServer, clock: FakeClock, mode: str) -> None:
    ti = FakeTaskInstance()
    with pytest.raises(AirflowSensorTimeout, match="last status seen: in_progress"):
        run(create(mode, {**BODY, "model": MODEL_SLOW}, wait_for_completion=True, timeout=30), mode, ti)
    assert status_of(emulator, ti.pushed["response_id"]) == "cancelled"
    assert posts(emulator)[-1] == f"/v1/responses/{ti.pushed['response_id']}/cancel"


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_keeps_the_response_when_told_to(
    emulator: EmulatorServer, clock: FakeClock, mode: str
) -> None:
    ti = FakeTaskInstance()
    operator = create(
        mode, {**BODY, "model": MODEL_SLOW}, wait_for_completion=True, timeout=30, cancel_on_kill=False
    )
    with pytest.raises(AirflowSensorTimeout):
        run(operator, mode, ti)
    assert status_of(emulator, ti.pushed["response_id"]) == "in_progress"
    assert posts(emulator) == ["/v1/responses"]


def test_on_kill_cancels_a_running_response_and_leaves_a_finished_one(emulator: EmulatorServer) -> None:
    operator = create(body={**BODY, "model": MODEL_SLOW})
    operator.on_kill()  # nothing started yet: no request
    assert emulator.state.requests == []
    started = operator.execute(make_context())
    operator.on_kill()
    assert status_of(emulator, started["id"]) == "cancelled"
    operator.on_kill()  # already ended: looked at, not cancelled again
    assert posts(emulator).count(f"/v1/responses/{started['id']}/cancel") == 1


def test_on_kill_never_raises_when_the_cancel_fails(emulator: EmulatorServer, sleeps: list[float]) -> None:
    operator = create(body={**BODY, "model": MODEL_SLOW})
    operator.execute(make_context())
    emulator.state.add_fault("status", path_contains="/v1/responses/", status=401, times=1)
    operator.on_kill()


def test_a_create_whose_answer_was_lost_fails_without_a_second_post(emulator: EmulatorServer) -> None:
    emulator.state.add_fault("reset_after", path_contains="/v1/responses")
    with pytest.raises(PortkeyConnectionError):
        create().execute(make_context())
    assert emulator.state.responses.created == 1


def test_an_outage_right_after_the_create_is_waited_out_not_taken_for_a_wrong_url(
    emulator: EmulatorServer, clock: FakeClock, sleeps: list[float], debug_logs: list[Any]
) -> None:
    """The create reached the server: a first poll refused is an outage, not a misconfiguration."""
    clock.on_sleep(lambda count: emulator.stop() if count == 1 else None)
    body = {**BODY, "model": MODEL_SLOW}

    with pytest.raises(AirflowSensorTimeout, match=r"last error: .*Connection refused"):
        create(body=body, wait_for_completion=True, poke_interval=10, timeout=30).execute(
            make_context(FakeTaskInstance())
        )
    assert "Could not cancel response" in log_text(debug_logs, "warning")  # the server is still down


def test_reschedule_mode_is_refused_when_the_dag_is_parsed() -> None:
    with (
        pytest.raises(PortkeyConfigurationError, match="reschedule"),
        DAG("response_operator_reschedule", schedule=None),
    ):
        CreateResponseOperator(task_id="ask", body=BODY, wait_for_completion=True, mode="reschedule")


def test_only_a_waiting_operator_warns_about_retention() -> None:
    create(poke_interval=3600)  # does not poll: nothing to warn about
    with pytest.warns(ResponseRetentionWarning):
        create(poke_interval=3600, wait_for_completion=True)


def test_get_returns_a_failed_response_without_failing(emulator: EmulatorServer) -> None:
    started = create(body={**BODY, "model": MODEL_FAILS}).execute(make_context())
    for _ in range(2):
        emulator.state.responses.retrieve(started["id"])
    ti = FakeTaskInstance()
    with DAG("get_response_tests", schedule=None):
        operator = GetResponseOperator(task_id="look", response_id=started["id"])
    result = operator.execute(make_context(ti))
    assert result["status"] == ti.pushed["status"] == "failed"
    assert result["error"]["code"] == "server_error"
    assert "usage" not in ti.pushed  # a failed response has none (pulling it gives None)


@pytest.mark.usefixtures("clock", "sleeps")
def test_in_a_dag_the_body_templates_and_the_answer_feeds_the_next_task(
    airflow: AirflowRuntime, emulator: EmulatorServer
) -> None:
    with DAG("response_operator_dag", schedule=None, params={"question": "Why is the sky blue?"}) as dag:
        ask = CreateResponseOperator(
            task_id="ask",
            body={"model": MODEL_COMPLETES, "input": "{{ params.question }}", "metadata": {"topic": "sky"}},
            wait_for_completion=True,
            deferrable=True,
            poke_interval=30,
        )
        look = GetResponseOperator(task_id="look", response_id="{{ ti.xcom_pull('ask', key='response_id') }}")

        @task
        def answer(ti: Any = None) -> str:
            return str(ti.xcom_pull(task_ids="ask", key="output_text")).upper()

        ask >> look >> answer()

    result = airflow.run(dag)

    assert result.task_states == {"ask": "success", "look": "success", "answer": "success"}
    assert result.xcom("ask")["metadata"] == {"topic": "sky"}
    assert result.xcom("look")["id"] == result.xcom("ask", "response_id")
    assert result.xcom("answer") == "EMULATED ANSWER TO: WHY IS THE SKY BLUE?"
