"""ResponseTrigger on a real event loop against the emulator: its one event for every outcome."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.emulator.background import MODEL_COMPLETES, MODEL_FAILS, MODEL_SLOW
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.models_response import Response
from airflow_provider_portkey.triggers import base as trigger_module  # its `time` is the clock
from airflow_provider_portkey.triggers.response import ResponseTrigger
from tests.sensors.support import FakeClock, recreate_trigger, run_trigger

pytestmark = pytest.mark.usefixtures("portkey_conn")


def start(model: str = MODEL_COMPLETES) -> Response:
    with PortkeyHook() as hook:
        return hook.create_response({"model": model, "input": "Hi"})


def trigger(response: Response, *, wait: float = 600, **kwargs: Any) -> ResponseTrigger:
    return ResponseTrigger(
        portkey_conn_id="portkey_default",
        response_id=response.id,
        deadline=trigger_module.time.time() + wait,  # type: ignore[attr-defined]
        poll_interval=5.0,
        fail_on_statuses=["failed", "cancelled", "incomplete"],
        **kwargs,
    )


def test_success_event_carries_the_completed_response(emulator: EmulatorServer, clock: FakeClock) -> None:
    response = start()
    payload = run_trigger(recreate_trigger(trigger(response, include=["reasoning.encrypted_content"])))
    assert (payload["status"], payload["response"]["status"]) == ("success", "completed")
    assert payload["message"] == f"response {response.id} is completed"
    assert emulator.state.requests[-1].query == [("include[]", "reasoning.encrypted_content")]


def test_failure_event_for_a_status_to_fail_on(clock: FakeClock) -> None:
    payload = run_trigger(trigger(start(MODEL_FAILS)))
    assert payload["status"] == "failure"
    assert payload["message"].endswith("is failed: server_error: Sorry, something went wrong.")


def test_timeout_event_names_the_last_status(clock: FakeClock) -> None:
    payload = run_trigger(trigger(start(MODEL_SLOW), wait=30))
    assert (payload["status"], payload["last_status"]) == ("timeout", "in_progress")


def test_error_event_when_the_response_is_gone(emulator: EmulatorServer, clock: FakeClock) -> None:
    response = start()
    emulator.state.responses.delete(response.id)
    payload = run_trigger(trigger(response))
    assert payload["status"] == "error"
    assert f"Response with id '{response.id}' not found" in payload["message"]
