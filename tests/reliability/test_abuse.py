"""Bad ids, redirects to another origin and misconfigured connections, through every entry point.

Each is refused before any request (the emulator records nothing) or, for a redirect, never
followed (a second local server records nothing), with an error that names what is wrong.
Entry points: the sync hook, the async hook, the sensor in poke, reschedule and deferrable mode,
the trigger on its own, and the operator.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyConfigurationError,
    PortkeyError,
    PortkeyRedirectError,
)
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook, close_shared_client
from airflow_provider_portkey.operators.run_step import GetRunStepOperator
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from airflow_provider_portkey.triggers.run_step import RunStepTrigger
from tests.reliability.support import R, T, operator, sensor, step_gets, use_connection
from tests.sensors.support import (
    FakeClock,
    FakeTaskInstance,
    defer,
    make_context,
    recreate_trigger,
    run_trigger,
)
from tests.support.secrets import API_KEY, PROVIDER_KEY, VIRTUAL_KEY, assert_no_secret

IDS = ("thread_id", "run_id", "step_id")
GOOD = [T, R, "step_instant"]

#: What an id can be by mistake or by malice, after templating or not.
BAD_IDS: list[Any] = [
    None,
    "",
    "None",
    " ",
    "..",
    "../runs",
    "/",
    "a/b",
    "step?x=1",
    "step#frag",
    "%2F",
    "a%2Fb",
    "%2e%2e",
    "a b",
    "a\tb",
    " step",
    "step\n",
    "step\r\nX-Injected: 1",
    "\u00a0step",
    "ünïcode",
    "步骤",
    "step🚀",
    "x" * 257,
    "x" * 100_000,
    12,
    b"step",
    ["step"],
]


def bad_id(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 30 else f"{text[:12]}...len={len(value)}"


async def _async_get(ids: list[Any]) -> None:
    try:
        await PortkeyAsyncHook().get_run_step(*ids)
    finally:
        await close_shared_client()


def _sensor_with(ids: list[Any], **kwargs: Any) -> RunStepSensor:
    task = sensor(GOOD[2], **kwargs)
    task.thread_id, task.run_id, task.step_id = ids
    return task


def _operator_with(ids: list[Any]) -> GetRunStepOperator:
    task = operator(GOOD[2])
    task.thread_id, task.run_id, task.step_id = ids
    return task


class TriggerEventError(Exception):
    """The trigger ended with an ``error`` event (its message is the exception's)."""


def _hook(ids: list[Any]) -> None:
    with PortkeyHook() as hook:
        hook.get_run_step(*ids)


def _async_hook(ids: list[Any]) -> None:
    asyncio.run(_async_get(ids))


def _sensor(mode: str) -> Callable[[list[Any]], None]:
    def run(ids: list[Any]) -> None:
        kwargs = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
        _sensor_with(ids, **kwargs).execute(make_context())

    return run


def _operator(ids: list[Any]) -> None:
    ti = FakeTaskInstance()
    try:
        _operator_with(ids).execute(make_context(ti))
    finally:
        assert ti.pushed == {}


def _trigger(ids: list[Any]) -> None:
    trigger = RunStepTrigger(
        portkey_conn_id="portkey_default",
        thread_id=ids[0],
        run_id=ids[1],
        step_id=ids[2],
        deadline=10**10,
        poll_interval=1,
    )
    event = run_trigger(trigger)
    if event["status"] == "error":
        raise TriggerEventError(event["message"])


ENTRY_POINTS: dict[str, Callable[[list[Any]], None]] = {
    "hook": _hook,
    "async-hook": _async_hook,
    "sensor-poke": _sensor("poke"),
    "sensor-reschedule": _sensor("reschedule"),
    "sensor-deferrable": _sensor("deferrable"),
    "operator": _operator,
    "trigger": _trigger,
}


def refused(entry: str, ids: list[Any], error: type[Exception]) -> str:
    """Run ``entry`` with ``ids``: it must raise ``error`` (the trigger: end with an error event)."""
    with pytest.raises(TriggerEventError if entry == "trigger" else error) as raised:
        ENTRY_POINTS[entry](ids)
    return str(raised.value)


# -- ids -----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("portkey_conn")
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("bad", BAD_IDS, ids=bad_id)
def test_a_bad_id_in_any_position_is_refused_naming_it_before_any_request(
    emulator: EmulatorServer, clock: FakeClock, entry: str, bad: Any
) -> None:
    for position, name in enumerate(IDS):
        ids = list(GOOD)
        ids[position] = bad

        message = refused(entry, ids, InvalidIdError)

        assert re.search(rf"\b{name} (must be an API id|is (None|''|'None'), not an API id)", message)
        if entry == "hook" and position < 2:  # the list call refuses a bad thread or run id too
            with PortkeyHook() as hook, pytest.raises(InvalidIdError, match=name):
                hook.list_run_steps(ids[0], ids[1])
    assert emulator.state.requests == []
    assert clock.sleeps == []


TEMPLATED_BAD = [None, "", "None", "../runs", "a/b", "a?b", "a#b", "%2F", "a b", "ünï", "x" * 300]


@pytest.mark.usefixtures("portkey_conn")
@pytest.mark.parametrize("native", [False, True], ids=["string-templates", "native-templates"])
@pytest.mark.parametrize("task_kind", ["sensor-poke", "sensor-reschedule", "sensor-deferrable", "operator"])
@pytest.mark.parametrize("bad", TEMPLATED_BAD, ids=bad_id)
def test_an_id_that_a_template_rendered_badly_is_refused_before_any_request(
    emulator: EmulatorServer, clock: FakeClock, native: bool, task_kind: str, bad: Any
) -> None:
    templates: dict[str, Any] = {"thread_id": T, "run_id": R, "step_id": "{{ params.step }}"}
    with DAG(f"templated_{task_kind}", schedule=None, render_template_as_native_obj=native):
        if task_kind == "operator":
            task: Any = GetRunStepOperator(task_id="get", **templates)
        else:
            mode = task_kind.removeprefix("sensor-")
            options: dict[str, Any] = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
            task = RunStepSensor(task_id="wait", **templates, **options)
    task.render_template_fields({"params": {"step": bad}})

    with pytest.raises(InvalidIdError, match=r"^step_id (must be|is .*, not) an API id"):
        task.execute(make_context())

    assert emulator.state.requests == []


# -- redirects -----------------------------------------------------------------------------------

REDIRECTS = [301, 302, 307, 308]


def redirect_away(emulator: EmulatorServer, target: EmulatorServer, status: int, times: int = 1) -> str:
    location = f"{target.base_url}/threads/{T}/runs/{R}/steps/step_instant?from=redirect"
    emulator.state.add_fault("redirect", status=status, location=location, times=times)
    return location


@pytest.fixture
def all_keys(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer) -> None:
    """A connection sending every key there is: API key, virtual key and provider key."""
    use_connection(monkeypatch, emulator.url, provider="openai", provider_api_key=PROVIDER_KEY, max_retries=3)


def assert_nothing_reached(target: EmulatorServer) -> None:
    assert target.state.requests == []
    assert target.state.request_count == 0


@pytest.mark.usefixtures("all_keys")
@pytest.mark.parametrize("status", REDIRECTS)
def test_async_hook_never_follows_a_redirect_to_another_origin(
    emulator: EmulatorServer, redirect_target: EmulatorServer, clock: FakeClock, status: int
) -> None:
    location = redirect_away(emulator, redirect_target, status)

    with pytest.raises(PortkeyRedirectError) as raised:
        asyncio.run(_async_get(GOOD))

    assert location in str(raised.value)
    assert f"HTTP {status}" in str(raised.value)
    assert_nothing_reached(redirect_target)
    assert len(emulator.state.requests) == 1
    assert clock.sleeps == []  # a redirect is not retried


@pytest.mark.usefixtures("all_keys")
@pytest.mark.parametrize("status", REDIRECTS)
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_fails_at_once_on_a_redirect_and_sends_nothing_to_its_target(
    emulator: EmulatorServer, redirect_target: EmulatorServer, clock: FakeClock, status: int, mode: str
) -> None:
    location = redirect_away(emulator, redirect_target, status, times=10)

    with pytest.raises(PortkeyRedirectError, match="refused") as raised:
        sensor(GOOD[2], mode=mode).execute(make_context())

    assert location in str(raised.value)
    assert_nothing_reached(redirect_target)
    assert len(emulator.state.requests) == 1


@pytest.mark.usefixtures("all_keys")
@pytest.mark.parametrize("status", REDIRECTS)
def test_deferred_sensor_ends_with_an_error_on_a_redirect_and_sends_nothing_to_its_target(
    emulator: EmulatorServer, redirect_target: EmulatorServer, clock: FakeClock, status: int
) -> None:
    task = sensor("step_completes", deferrable=True)
    deferred = defer(task, make_context())
    location = redirect_away(emulator, redirect_target, status, times=10)

    event = run_trigger(recreate_trigger(deferred.trigger))

    assert event["status"] == "error"
    assert location in event["message"]
    with pytest.raises(PortkeyError, match="refused"):
        task.resume_execution("execute_complete", {"event": event}, make_context())
    assert_nothing_reached(redirect_target)
    assert step_gets(emulator, "step_completes") == 2


@pytest.mark.usefixtures("all_keys")
@pytest.mark.parametrize("status", REDIRECTS)
def test_operator_fails_on_a_redirect_and_sends_nothing_to_its_target(
    emulator: EmulatorServer, redirect_target: EmulatorServer, sleeps: list[float], status: int
) -> None:
    location = redirect_away(emulator, redirect_target, status, times=10)

    with pytest.raises(PortkeyRedirectError) as raised:
        operator(GOOD[2]).execute(make_context())

    assert location in str(raised.value)
    assert_nothing_reached(redirect_target)
    assert len(emulator.state.requests) == 1
    assert sleeps == []


# -- connection misconfiguration -----------------------------------------------------------------

MISCONFIGURED: list[tuple[str, dict[str, Any], str]] = [
    ("no-api-key", {"password": None}, "'password'"),
    ("empty-api-key", {"password": ""}, "'password'"),
    ("url-with-a-bad-scheme", {"host": "ftp://gateway.internal"}, "'host'"),
    ("url-with-whitespace", {"host": "http://gate way.internal"}, "'host'"),
    ("url-with-a-bad-port", {"host": "http://127.0.0.1:99999"}, "'host'"),
    ("url-with-credentials", {"host": "https://user:pw@gateway.internal"}, "'host'"),
    ("config-that-is-not-json", {"extra": {"config": '{"provider": "openai",'}}, "'config'"),
    ("unknown-option", {"extra": {"virtual_kye": VIRTUAL_KEY}}, "'virtual_kye'"),
    ("bad-retry-count", {"extra": {"max_retries": "many"}}, "'max_retries'"),
    ("no-way-to-choose-an-upstream", {"extra": {"virtual_key": None}}, "virtual_key, provider"),
    (
        "provider-key-without-provider",
        {"extra": {"provider_api_key": PROVIDER_KEY}},
        "'provider_api_key'",
    ),
]


def misconfigure(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "conn_type": "portkey",
        "host": emulator.url,
        "password": API_KEY,
        "extra": {"virtual_key": VIRTUAL_KEY},
    }
    fields.update({key: value for key, value in change.items() if key != "extra"})
    fields["extra"].update(change.get("extra", {}))
    fields["extra"] = {key: value for key, value in fields["extra"].items() if value is not None}
    monkeypatch.setenv("AIRFLOW_CONN_PORTKEY_DEFAULT", json.dumps(fields))


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize(("case", "change", "names"), MISCONFIGURED, ids=[c[0] for c in MISCONFIGURED])
def test_a_misconfigured_connection_fails_at_first_use_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
    emulator: EmulatorServer,
    clock: FakeClock,
    entry: str,
    case: str,
    change: dict[str, Any],
    names: str,
) -> None:
    misconfigure(monkeypatch, emulator, change)
    if entry not in ("trigger", "async-hook"):  # ValueError too, so bad input reads as bad input
        with pytest.raises(ValueError, match=names.replace("'", "")):
            ENTRY_POINTS[entry](GOOD)
    # Building the task (DAG parsing) does not read the connection: only its first use does.
    sensor(GOOD[2])
    operator(GOOD[2])
    PortkeyHook()

    message = refused(entry, GOOD, PortkeyConfigurationError)

    assert message.count("Airflow connection 'portkey_default'") == 1
    assert "Portkey connection" in message
    assert names in message
    assert ("is empty" in message) is case.endswith("api-key")
    assert_no_secret(message)
    assert "pw@" not in message
    assert emulator.state.requests == []
