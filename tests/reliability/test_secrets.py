"""Secrets sweep: every entry point, on every success and error path, with DEBUG logging everywhere.

The connection sends all three keys (API key, virtual key, provider key), and the emulator echoes
them back in error bodies, a malformed body and a redirect's location. Afterwards none of the
keys may appear in any log record (ours, Airflow's, httpx/httpcore/urllib3 at DEBUG), any
exception (``str``, ``repr``, traceback text), any XCom value, any rendered template field, the
trigger's kwargs or serialized form, any trigger event, or the ``repr`` of a hook, its settings, a
trigger, a sensor or an operator.

A real ``dag.test()`` run (XCom and rendered fields from the metadata DB) is
``tests/sensors/test_run_step_sensor_dag.py::test_no_secret_reaches_xcom_rendered_fields_or_the_logs_of_a_real_run``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook, close_shared_client
from airflow_provider_portkey.operators.run_step import GetRunStepOperator
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from tests.reliability.support import R, T, use_connection
from tests.sensors.support import (
    FakeClock,
    FakeTaskInstance,
    defer,
    log_text,
    make_context,
    recreate_trigger,
    run_trigger,
)
from tests.support.airflow_compat import redact, serialize
from tests.support.secrets import API_KEY, PROVIDER_KEY, SECRETS, VIRTUAL_KEY, assert_no_secret

STEP = "step_leak"
ALL_KEYS = f"{API_KEY} {VIRTUAL_KEY} {PROVIDER_KEY}"
LOGGERS = ("", "httpx", "httpcore", "urllib3", "requests", "airflow", "airflow.task", "asyncio")


@dataclass(frozen=True)
class Scenario:
    name: str
    inject: Callable[[EmulatorServer, EmulatorServer], None]
    statuses: tuple[str, ...] = ("in_progress", "completed")


def _fault(kind: str, **options: Any) -> Callable[[EmulatorServer, EmulatorServer], None]:
    def inject(emulator: EmulatorServer, target: EmulatorServer) -> None:
        emulator.state.add_fault(kind, times=10, **options)  # type: ignore[arg-type]

    return inject


def _nothing(emulator: EmulatorServer, target: EmulatorServer) -> None:
    return None


def _redirect(emulator: EmulatorServer, target: EmulatorServer) -> None:
    location = f"{target.base_url}/x?k={API_KEY}&v={VIRTUAL_KEY}&p={PROVIDER_KEY}"
    emulator.state.add_fault("redirect", status=307, location=location, times=10)


def _revoked(emulator: EmulatorServer, target: EmulatorServer) -> None:
    emulator.state.api_keys = frozenset({"pk-some-other-key"})


SCENARIOS = [
    Scenario("completes", _nothing),
    Scenario("fails", _nothing, ("in_progress", "failed")),
    Scenario("api-key-refused", _revoked),
    Scenario(
        "401-echoing-the-provider-key",
        _fault(
            "status",
            status=401,
            body={
                "error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}", "code": "invalid_api_key"}
            },
        ),
    ),
    Scenario(
        "403-echoing-the-virtual-key",
        _fault("status", status=403, body={"status": "failure", "message": f"{VIRTUAL_KEY} is disabled"}),
    ),
    Scenario("404", _fault("status", status=404)),
    Scenario("429-until-the-retries-end", _fault("status", status=429, headers={"Retry-After": "0"})),
    Scenario(
        "502-html-echoing-every-key",
        _fault("status", status=502, body=f"<html>{ALL_KEYS}</html>", headers={"Content-Type": "text/html"}),
    ),
    Scenario("reset", _fault("reset")),
    Scenario("truncated", _fault("truncated")),
    Scenario("200-not-json-echoing-every-key", _fault("malformed", body=f"oops {ALL_KEYS}")),
    Scenario(
        "200-wrong-shape-with-keys-as-values",
        _fault(
            "malformed",
            body={"object": "thread.run", "id": API_KEY, "status": VIRTUAL_KEY, "x": PROVIDER_KEY},
        ),
    ),
    Scenario("redirect-with-every-key-in-its-location", _redirect),
]


@dataclass
class Seen:
    """Everything a user or an operator of Airflow could get to see."""

    texts: list[Any]

    def error(self, error: BaseException) -> None:
        self.texts += [str(error), repr(error), error.args, "".join(traceback.format_exception(error))]

    def add(self, *values: Any) -> None:
        self.texts += list(values)


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> None:
    use_connection(
        monkeypatch,
        emulator.url,
        provider="openai",
        provider_api_key=PROVIDER_KEY,
        max_retries=1,
        max_retry_wait=0,
    )


def templated(kind: type[RunStepSensor] | type[GetRunStepOperator], **kwargs: Any) -> Any:
    """A task whose ids come from templates, rendered as Airflow would before ``execute``."""
    with DAG(f"secrets_{kind.__name__}", schedule=None):
        task = kind(
            task_id="task",
            thread_id="{{ params.thread }}",
            run_id="{{ params.run }}",
            step_id="{{ params.step }}",
            **kwargs,
        )
    task.render_template_fields({"params": {"thread": T, "run": R, "step": STEP}})
    return task


def rendered(task: Any) -> dict[str, Any]:
    return {name: getattr(task, name) for name in task.template_fields}


def run_hook(seen: Seen) -> None:
    with PortkeyHook(trace_id="sweep") as hook:
        try:
            seen.add(hook.get_run_step(T, R, STEP).to_json())
        finally:
            seen.add(repr(hook), str(hook), repr(hook.settings), hook.test_connection())


def run_async_hook(seen: Seen) -> None:
    async def main() -> None:
        hook = PortkeyAsyncHook(trace_id="sweep")
        try:
            seen.add((await hook.get_run_step(T, R, STEP)).to_json())
        finally:
            seen.add(repr(hook), repr(await hook.get_settings()))
            await close_shared_client()

    asyncio.run(main())


def run_poke_sensor(seen: Seen) -> None:
    task = templated(RunStepSensor, poke_interval=5, timeout=7, mode="poke")
    seen.add(repr(task), rendered(task))
    seen.add(task.execute(make_context()))


def run_operator(seen: Seen) -> None:
    task = templated(GetRunStepOperator)
    ti = FakeTaskInstance()
    seen.add(repr(task), rendered(task))
    try:
        seen.add(task.execute(make_context(ti)))
    finally:
        seen.add(ti.pushed)


ENTRY_POINTS: dict[str, Callable[[Seen], None]] = {
    "hook": run_hook,
    "async-hook": run_async_hook,
    "sensor-poke": run_poke_sensor,
    "operator": run_operator,
}


def check(
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
    debug_logs: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    captured = capsys.readouterr()
    ours, echoed = [], []
    for record in caplog.records:
        message = record.getMessage()
        # httpcore's DEBUG trace quotes response headers verbatim: a server that echoes a key in
        # one (here the redirect's Location) is quoted as is. Airflow's masker must hide those.
        if record.name.startswith("httpcore") and message.startswith("receive_response_headers"):
            echoed.append(message)
        else:
            ours.append((message, record.args, record.exc_text, record.exc_info and record.exc_info[1]))
    # Airflow 3.0 also prints every record to stdout: the same httpcore header trace goes to the
    # masker check below, everything else printed must be clean as it is.
    printed: list[str] = []
    for line in captured.out.splitlines():
        (echoed if "receive_response_headers" in line else printed).append(line)
    assert any("step_leak" in str(line) for line in ours)  # the DEBUG lines were captured
    assert_no_secret(*seen.texts, ours, log_text(debug_logs), "\n".join(printed), captured.err)
    assert_no_secret(*(redact(message) for message in echoed))


@pytest.mark.usefixtures("keys")
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_no_key_leaks_from_any_path_of_the_hooks_the_poke_sensor_or_the_operator(
    emulator: EmulatorServer,
    redirect_target: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
    everything_logged: pytest.LogCaptureFixture,
    debug_logs: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    entry: str,
) -> None:
    seen = Seen([])
    errors = 0
    for scenario in SCENARIOS:
        emulator.state.reset()
        emulator.state.api_keys = None
        emulator.state.add_step(T, R, STEP, statuses=scenario.statuses)
        scenario.inject(emulator, redirect_target)
        try:
            ENTRY_POINTS[entry](seen)
        except Exception as error:
            errors += 1
            seen.error(error)

    assert errors >= len(SCENARIOS) - 3  # the error paths were taken
    assert redirect_target.state.request_count == 0
    check(seen, everything_logged, debug_logs, capsys)


@pytest.mark.usefixtures("keys")
def test_no_key_leaks_from_any_path_of_the_deferred_sensor_and_its_trigger(
    emulator: EmulatorServer,
    redirect_target: EmulatorServer,
    clock: FakeClock,
    sleeps: list[float],
    everything_logged: pytest.LogCaptureFixture,
    debug_logs: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen = Seen([])
    events: list[str] = []
    for scenario in SCENARIOS:
        emulator.state.reset()
        emulator.state.api_keys = None
        emulator.state.add_step(T, R, STEP, statuses=("in_progress", *scenario.statuses))
        task = templated(RunStepSensor, poke_interval=5, timeout=7, deferrable=True)
        resumed = copy.deepcopy(task)
        deferred = defer(task, make_context())
        scenario.inject(emulator, redirect_target)  # the trigger meets it
        trigger = recreate_trigger(deferred.trigger)
        classpath, kwargs = trigger.serialize()
        seen.add(repr(task), rendered(task), repr(deferred), repr(trigger), vars(trigger))
        seen.add(classpath, kwargs, serialize(kwargs))
        event = run_trigger(trigger)
        events.append(event["status"])
        seen.add(event, serialize(event))
        try:
            seen.add(resumed.resume_execution("execute_complete", {"event": event}, make_context()))
        except Exception as error:
            seen.error(error)

    assert set(events) == {"success", "failure", "error", "timeout"}
    assert redirect_target.state.request_count == 0
    check(seen, everything_logged, debug_logs, capsys)


def test_the_suite_checks_for_the_keys_it_configures() -> None:
    # The sweep is only as good as the values it looks for: the three keys of the connection.
    assert set(SECRETS) == {API_KEY, VIRTUAL_KEY, PROVIDER_KEY}
    assert len(set(SECRETS)) == 3
