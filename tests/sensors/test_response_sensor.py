"""ResponseSensor against the emulator in poke, reschedule and deferrable mode: the shared mechanism's rules.

Responses are created through the API (scripts chosen by model) and move on per GET. Deferrable
tests go the whole way Airflow goes (``tests.sensors.support.run_deferred``); the ``dag.test()``
tests run the sensor through Airflow's task runner, XComs and all.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.emulator.background import (
    MODEL_CANCELLED,
    MODEL_COMPLETES,
    MODEL_FAILS,
    MODEL_INCOMPLETE,
    MODEL_SLOW,
)
from airflow_provider_portkey.errors import (
    PortkeyConfigurationError,
    PortkeyError,
    PortkeyNotFoundError,
    ResponseUnsuccessfulError,
)
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models_response import Response
from airflow_provider_portkey.sensors.response import ResponseRetentionWarning, ResponseSensor
from airflow_provider_portkey.triggers.response import ResponseTrigger
from tests.sensors.dagrun import AirflowRuntime
from tests.sensors.support import FakeClock, FakeTaskInstance, defer, log_text, make_context, run_deferred

pytestmark = pytest.mark.usefixtures("portkey_conn")

MODES = ("poke", "deferrable")
#: What each ending looks like in a failure message: (model, status, part of the message).
UNSUCCESSFUL = [
    (MODEL_FAILS, "failed", "server_error: Sorry, something went wrong."),
    (MODEL_INCOMPLETE, "incomplete", "max_output_tokens"),
    (MODEL_CANCELLED, "cancelled", "is cancelled"),
]


def start(model: str = MODEL_COMPLETES, **body: Any) -> Response:
    with PortkeyHook() as hook:
        return hook.create_response({"model": model, "input": "What is 2+2?", **body})


def sensor(response: Response, mode: str, **kwargs: Any) -> ResponseSensor:
    options: dict[str, Any] = {"poke_interval": 5, "timeout": 600, "deferrable": mode == "deferrable"}
    options.update(kwargs)
    with DAG("response_sensor_tests", schedule=None):
        return ResponseSensor(task_id="wait_for_response", response_id=response.id, **options)


def wait(task: ResponseSensor, mode: str, ti: FakeTaskInstance | None = None) -> Any:
    context = make_context(ti)
    if mode == "poke":
        return task.execute(context)
    return run_deferred(task, context)[0]


def gets(emulator: EmulatorServer, response: Response) -> int:
    return sum(
        1 for r in emulator.state.requests if (r.method, r.path) == ("GET", f"/v1/responses/{response.id}")
    )


@pytest.mark.parametrize("mode", MODES)
def test_waits_until_completed_and_pushes_the_json_status_text_and_usage(
    emulator: EmulatorServer, clock: FakeClock, mode: str, debug_logs: list[Any]
) -> None:
    response = start()
    ti = FakeTaskInstance()
    result = wait(sensor(response, mode), mode, ti)
    assert result["status"] == "completed"
    assert result == Response.from_api(result).to_json()
    assert ti.pushed["status"] == "completed"
    assert ti.pushed["output_text"] == "Emulated answer to: What is 2+2?"
    assert ti.pushed["usage"] == result["usage"]
    assert gets(emulator, response) == 2  # in_progress, then completed
    assert clock.sleeps[0] == 5
    assert "input 36 (cached 12), output 87 (reasoning 24), total 123" in log_text(debug_logs, "info")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("model", "status", "why"), UNSUCCESSFUL)
def test_every_unsuccessful_ending_fails_the_task_without_retries(
    clock: FakeClock, mode: str, model: str, status: str, why: str
) -> None:
    ti = FakeTaskInstance()
    with pytest.raises(ResponseUnsuccessfulError) as raised:
        wait(sensor(start(model), mode), mode, ti)
    assert isinstance(raised.value, AirflowFailException)
    assert f"is {status}" in str(raised.value)
    assert why in str(raised.value)
    assert ti.pushed["status"] == status  # usage and status are kept even for a failed response


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("model", "status", "_why"), UNSUCCESSFUL)
def test_with_no_fail_statuses_every_ending_is_returned_for_branching(
    clock: FakeClock, mode: str, model: str, status: str, _why: str
) -> None:
    assert wait(sensor(start(model), mode, fail_on_statuses=()), mode)["status"] == status


@pytest.mark.parametrize("mode", MODES)
def test_a_transient_burst_mid_wait_is_waited_out_with_retry_after(
    emulator: EmulatorServer, clock: FakeClock, sleeps: list[float], mode: str
) -> None:
    response = start(MODEL_SLOW)

    def burst(count: int) -> None:
        if count == 1:  # after the first wait: more 503s than the hook retries, asking for 30 s
            emulator.state.add_fault(
                "status", path_contains=response.id, status=503, headers={"Retry-After": "30"}, times=8
            )

    clock.on_sleep(burst)
    with pytest.raises(AirflowSensorTimeout, match="last status seen: in_progress"):
        wait(sensor(response, mode, timeout=3600), mode)
    assert 30 in clock.sleeps


@pytest.mark.parametrize("mode", MODES)
def test_a_response_that_is_gone_fails_at_once(emulator: EmulatorServer, clock: FakeClock, mode: str) -> None:
    response = start()
    emulator.state.responses.delete(response.id)  # e.g. past the provider's retention
    with pytest.raises(PortkeyNotFoundError, match=f"Response with id '{response.id}' not found"):
        sensor(response, mode).execute(make_context())
    assert clock.sleeps == []


@pytest.mark.parametrize("mode", MODES)
def test_timeout_with_soft_fail_skips_keeping_the_reason(clock: FakeClock, mode: str) -> None:
    task = sensor(start(MODEL_SLOW), mode, timeout=30, soft_fail=True)
    with pytest.raises(AirflowSkipException, match=r"soft_fail: .*response resp_\w+; last status seen"):
        wait(task, mode)


def test_deferral_hands_the_trigger_plain_kwargs(emulator: EmulatorServer, clock: FakeClock) -> None:
    response = start(MODEL_SLOW)
    task = sensor(response, "deferrable", timeout=120, include="reasoning.encrypted_content")
    trigger = defer(task, make_context()).trigger
    assert isinstance(trigger, ResponseTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_portkey.triggers.response.ResponseTrigger"
    assert kwargs["response_id"] == response.id
    assert kwargs["include"] == ["reasoning.encrypted_content"]  # one templated string is one value
    assert kwargs["deadline"] == clock.now + 120
    assert kwargs["fail_on_statuses"] == ["failed", "cancelled", "incomplete"]


def test_bad_fail_on_statuses_are_refused_when_the_dag_is_parsed() -> None:
    placeholder = Response.from_api({"id": "resp_1", "status": "queued"})
    with pytest.raises(PortkeyConfigurationError, match="'queued'"):
        sensor(placeholder, "poke", fail_on_statuses=("queued",))


@pytest.mark.parametrize(
    "options",
    [{"poke_interval": 900}, {"exponential_backoff": True}, {"exponential_backoff": True, "max_wait": 3600}],
)
def test_polls_that_could_outlive_the_providers_retention_warn_at_parse_time(options: dict[str, Any]) -> None:
    placeholder = Response.from_api({"id": "resp_1", "status": "queued"})
    with pytest.warns(ResponseRetentionWarning, match="wait_for_response: the time between two polls"):
        sensor(placeholder, "poke", **options)


@pytest.mark.parametrize(
    "options", [{"poke_interval": 60}, {"exponential_backoff": True, "max_wait": timedelta(minutes=5)}]
)
def test_polls_within_the_retention_do_not_warn(options: dict[str, Any]) -> None:
    placeholder = Response.from_api({"id": "resp_1", "status": "queued"})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResponseRetentionWarning)
        sensor(placeholder, "poke", **options)


# -- statuses this provider does not know, and the first look -------------------------------------

#: A server's own non-final status (the emulator shows it like any other).
MODEL_PAUSES = "emulator-pauses"
UNKNOWN_WARNING = "has status 'paused', which this provider does not know"


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_status_is_waited_through_with_one_warning(
    emulator: EmulatorServer, clock: FakeClock, debug_logs: list[Any], mode: str
) -> None:
    emulator.state.responses.add_script(
        MODEL_PAUSES, statuses=("queued", "in_progress", "paused", "paused", "completed")
    )
    response = start(MODEL_PAUSES)

    result = wait(sensor(response, mode), mode)

    assert result["status"] == "completed"
    assert gets(emulator, response) == 4  # the create answered queued; each GET shows the next status
    warned = [e for e in debug_logs if e.get("log_level") == "warning" and UNKNOWN_WARNING in str(e["event"])]
    assert len(warned) == 1


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_status_listed_in_fail_on_statuses_ends_the_wait_as_a_failure(
    emulator: EmulatorServer, clock: FakeClock, mode: str
) -> None:
    emulator.state.responses.add_script(
        MODEL_PAUSES, statuses=("queued", "in_progress", "paused", "completed")
    )
    response = start(MODEL_PAUSES)

    with pytest.raises(ResponseUnsuccessfulError, match=f"response {response.id} is paused"):
        wait(sensor(response, mode, fail_on_statuses=("failed", "paused")), mode)
    assert gets(emulator, response) == 2


def test_a_typo_of_a_response_status_in_fail_on_statuses_is_refused() -> None:
    placeholder = Response.from_api({"id": "resp_1", "status": "queued"})
    with pytest.raises(
        PortkeyConfigurationError, match="'incompete', which looks like a typo of 'incomplete'"
    ):
        sensor(placeholder, "poke", fail_on_statuses=("incompete",))


@pytest.mark.parametrize("mode", MODES)
def test_a_first_look_that_reaches_no_server_fails_at_once(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: Any,
    closed_port: int,
    clock: FakeClock,
    sleeps: list[float],
    mode: str,
) -> None:
    placeholder = Response.from_api({"id": "resp_1", "status": "queued"})
    portkey_conn.set(monkeypatch, host=f"http://127.0.0.1:{closed_port}", max_retries=1)

    with pytest.raises(PortkeyError, match=r"first look, which reached no server.*Connection refused"):
        sensor(placeholder, mode, timeout=3600).execute(make_context())  # deferrable: before deferring
    assert clock.sleeps == []


# -- run by Airflow: dag.test() in every mode ------------------------------------------------------

DAG_MODES: dict[str, dict[str, Any]] = {
    "poke": {"mode": "poke", "deferrable": False, "poke_interval": 30},
    "reschedule": {"mode": "reschedule", "deferrable": False, "poke_interval": 0},
    "deferrable": {"mode": "poke", "deferrable": True, "poke_interval": 30},
}


@pytest.mark.usefixtures("clock", "sleeps")
@pytest.mark.parametrize("mode", DAG_MODES)
def test_airflow_stores_the_response_as_sent_and_its_keys_in_every_mode(
    airflow: AirflowRuntime, emulator: EmulatorServer, mode: str
) -> None:
    response = start()
    with DAG(f"response_sensor_{mode}", schedule=None) as dag:
        ResponseSensor(task_id="wait", response_id=response.id, **DAG_MODES[mode])

    result = airflow.run(dag)

    assert result.task_states == {"wait": "success"}
    sent = emulator.state.responses.retrieve(response.id)  # one more look: it stays completed
    assert result.xcom("wait") == sent
    assert result.xcom("wait", "status") == "completed"
    assert result.xcom("wait", "output_text") == "Emulated answer to: What is 2+2?"
    assert sent is not None
    assert result.xcom("wait", "usage") == sent["usage"]
