"""Trigger kwargs are a contract across releases: what one release serialized, the next must run.

``tests/data/trigger_kwargs`` holds kwargs frozen from real sensor deferrals of earlier releases
(each file names its release). After an upgrade the triggerer re-creates such triggers from the
metadata DB: each must be accepted as it was stored and run to its event against the emulator.
Kwargs this release does not know (a later release's, or an option since removed) are logged and
ignored, never a ``TypeError`` that kills a wait already in flight.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger

from airflow_provider_portkey.emulator import ASST_DEMO, SEED_RUN_ID, SEED_THREAD_ID, EmulatorServer
from airflow_provider_portkey.emulator.background import MODEL_COMPLETES
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.polling import poll_interval
from airflow_provider_portkey.provider_info import get_provider_info
from airflow_provider_portkey.triggers.base import PortkeyPollTrigger
from airflow_provider_portkey.triggers.run_step import RunStepTrigger
from tests.sensors.support import FakeClock, log_text, run_trigger
from tests.support.airflow_compat import deserialize, import_string, serialize

pytestmark = pytest.mark.usefixtures("portkey_conn")

FROZEN = sorted((Path(__file__).parents[1] / "data" / "trigger_kwargs").glob("*.json"))


def frozen(path: Path) -> tuple[str, dict[str, Any]]:
    data = json.loads(path.read_text())
    return data["classpath"], data["kwargs"]


def stored_and_restored(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs as the triggerer gets them back from the metadata DB (Airflow's serde)."""
    restored = deserialize(serialize(kwargs))
    assert isinstance(restored, dict)
    return restored


def prepare(emulator: EmulatorServer, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Put in the emulator what the frozen kwargs wait on: the step, or a run or response (new ids)."""
    if "step_id" in kwargs:
        assert (kwargs["thread_id"], kwargs["run_id"]) == (SEED_THREAD_ID, SEED_RUN_ID)
        emulator.state.add_step(
            SEED_THREAD_ID, SEED_RUN_ID, kwargs["step_id"], statuses=("in_progress", "completed")
        )
        return kwargs
    if "response_id" in kwargs:
        with PortkeyHook() as hook:
            response = hook.create_response({"model": MODEL_COMPLETES, "input": "frozen"})
        return {**kwargs, "response_id": response.id}
    with PortkeyHook() as hook:
        run = hook.create_thread_and_run(ASST_DEMO)
    # Only the ids change (the emulator makes new ones); every other kwarg is as it was stored.
    return {**kwargs, "thread_id": run.thread_id, "run_id": run.id}


def test_fixtures_cover_every_registered_trigger() -> None:
    """A new trigger needs frozen kwargs too, from the first release that ships it."""
    registered = {
        f"{module.__name__}.{cls.__qualname__}"
        for entry in get_provider_info()["triggers"]
        for module in map(importlib.import_module, entry["python-modules"])
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseTrigger) and cls.__module__ == module.__name__ and not inspect.isabstract(cls)
    }
    assert len(registered) >= 3
    assert {frozen(path)[0] for path in FROZEN} == registered


@pytest.mark.parametrize("path", FROZEN, ids=[path.stem for path in FROZEN])
def test_kwargs_frozen_by_an_earlier_release_run_to_their_event(
    path: Path, emulator: EmulatorServer, clock: FakeClock
) -> None:
    classpath, kwargs = frozen(path)
    kwargs = prepare(emulator, stored_and_restored(kwargs))
    clock.now = kwargs["deadline"] - 600  # deferred a while ago, its deadline still ahead

    trigger = import_string(classpath)(**kwargs)
    payload = run_trigger(trigger)

    assert isinstance(trigger, PortkeyPollTrigger)
    assert payload["status"] == "success", payload
    assert payload[trigger.noun]["status"] == "completed"
    assert payload[trigger.noun]["id"] == trigger.target_id()
    # The stored options are the ones it acts on: the schedule it continues, the task's trace.
    # polls_done=1: it waits before its first poll, as poke mode would before its second.
    assert clock.sleeps[0] == poll_interval(
        kwargs["poll_interval"],
        kwargs["polls_done"],
        exponential_backoff=kwargs["exponential_backoff"],
        jitter_key="#".join(trigger.target_path()),
        max_wait=kwargs["max_wait"],
    )
    traced = {request.headers.get("x-portkey-trace-id") for request in emulator.state.requests[-2:]}
    assert traced == {kwargs["trace_id"]}


def test_unknown_kwargs_are_logged_and_ignored(
    emulator: EmulatorServer, clock: FakeClock, debug_logs: list[dict[str, Any]]
) -> None:
    _, kwargs = frozen(next(path for path in FROZEN if path.stem == "run_step_defaults"))
    kwargs = prepare(emulator, kwargs)
    clock.now = kwargs["deadline"] - 600

    unknown: dict[str, Any] = {"renamed_in_a_later_release": 1, "jitter_seed": "x"}
    trigger = RunStepTrigger(**kwargs, **unknown)
    payload = run_trigger(trigger)

    assert payload["status"] == "success"
    warnings = log_text(debug_logs, "warning")
    assert "RunStepTrigger ignores kwargs it does not know" in warnings
    assert "jitter_seed, renamed_in_a_later_release" in warnings
    assert "renamed_in_a_later_release" not in trigger.serialize()[1]


def test_only_the_ids_and_the_deadline_are_required(emulator: EmulatorServer, clock: FakeClock) -> None:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_bare", statuses=("completed",))
    trigger = RunStepTrigger(
        thread_id=SEED_THREAD_ID, run_id=SEED_RUN_ID, step_id="step_bare", deadline=clock.now + 60
    )
    _, kwargs = trigger.serialize()
    assert (kwargs["portkey_conn_id"], kwargs["poll_interval"]) == ("portkey_default", 60.0)
    assert run_trigger(trigger)["status"] == "success"
    with pytest.raises(TypeError, match="deadline"):
        RunStepTrigger(thread_id=SEED_THREAD_ID, run_id=SEED_RUN_ID, step_id="step_bare")  # type: ignore[call-arg]
