"""The provider through the real open-source Portkey gateway, with the emulator as the upstream.

The chain is: hook / sensor / trigger / ``airflow dags test`` -> gateway (npm ``@portkey-ai/gateway``
on a loopback port) -> emulator in ``openai`` mode (an OpenAI-compatible upstream that records
what it receives). The connection routes with ``provider`` = ``openai``, a provider key and
``custom_host`` = the emulator, exactly as a self-hosted setup would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from airflow.providers.common.compat.sdk import Context, TaskDeferred

from airflow_provider_portkey.emulator import (
    SEED_RUN_ID,
    SEED_STEP_IDS,
    SEED_THREAD_ID,
    STEP_COMPLETES,
    STEP_INSTANT,
    EmulatorServer,
)
from airflow_provider_portkey.errors import PortkeyNotFoundError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import close_shared_client
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from airflow_provider_portkey.triggers.run_step import RunStepTrigger
from tests.example_dags.airflow_cli import (
    DagRunResult,
    run_dag,
    without_mask_secret_requests,
)
from tests.support.gateway import PortkeyGateway
from tests.support.secrets import API_KEY, PROVIDER_KEY, assert_no_secret

pytestmark = pytest.mark.e2e

CONTEXT = cast(Context, {})  # what the sensor's poke and execute_complete read of it: nothing


@pytest.fixture
def upstream() -> Iterator[EmulatorServer]:
    """A fresh OpenAI-compatible upstream (the emulator in openai mode), seeded with the demo steps."""
    with EmulatorServer(mode="openai") as server:
        yield server


def _connection(gateway: PortkeyGateway, upstream: EmulatorServer, **extra: Any) -> dict[str, Any]:
    return {
        "conn_type": "portkey",
        "host": gateway.url,
        "password": API_KEY,
        "extra": {
            "provider": "openai",
            "provider_api_key": PROVIDER_KEY,
            "custom_host": upstream.base_url,
            **extra,
        },
    }


@pytest.fixture
def through_gateway(
    monkeypatch: pytest.MonkeyPatch, portkey_gateway: PortkeyGateway, upstream: EmulatorServer
) -> EmulatorServer:
    """``portkey_default`` pointing at the gateway, which forwards to ``upstream``; returns it."""
    connection = _connection(portkey_gateway, upstream, max_retry_wait=10)
    monkeypatch.setenv("AIRFLOW_CONN_PORTKEY_DEFAULT", json.dumps(connection))
    return upstream


def _step_requests(upstream: EmulatorServer, step_id: str) -> int:
    return sum(1 for r in upstream.state.requests if r.path.endswith(f"/steps/{step_id}"))


def _seed_json(upstream: EmulatorServer, step_id: str) -> dict[str, Any]:
    steps = upstream.state.list_steps(SEED_THREAD_ID, SEED_RUN_ID) or []
    return next(step for step in steps if step["id"] == step_id)


# -- the hook -----------------------------------------------------------------------------------------


def test_hook_gets_a_run_step_through_the_gateway(through_gateway: EmulatorServer) -> None:
    with PortkeyHook() as hook:
        step = hook.get_run_step(SEED_THREAD_ID, SEED_RUN_ID, STEP_INSTANT)
    assert step.to_json() == _seed_json(through_gateway, STEP_INSTANT)


def test_hook_lists_every_run_step_across_pages_through_the_gateway(through_gateway: EmulatorServer) -> None:
    with PortkeyHook() as hook:
        steps = hook.list_run_steps(SEED_THREAD_ID, SEED_RUN_ID, limit=2)
    assert [step.id for step in steps] == list(SEED_STEP_IDS)
    pages = [r for r in through_gateway.state.requests if r.path.endswith("/steps")]
    assert len(pages) == 5  # 9 steps, 2 per page: the `after` cursor survived the gateway
    assert [value for name, value in pages[1].query if name == "after"] == [SEED_STEP_IDS[1]]


def test_upstream_receives_the_provider_key_and_the_assistants_beta_header(
    through_gateway: EmulatorServer,
) -> None:
    with PortkeyHook() as hook:
        hook.get_run_step(SEED_THREAD_ID, SEED_RUN_ID, STEP_INSTANT)
    [received] = through_gateway.state.requests
    assert received.path == f"/v1/threads/{SEED_THREAD_ID}/runs/{SEED_RUN_ID}/steps/{STEP_INSTANT}"
    assert received.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "assistants=v2" in received.headers["openai-beta"]
    assert [name for name in received.headers if name.startswith("x-portkey-")] == []
    assert API_KEY not in json.dumps(received.headers)  # the Portkey key stays with the gateway


def test_upstream_404_becomes_not_found(through_gateway: EmulatorServer, sleeps: list[float]) -> None:
    with PortkeyHook() as hook, pytest.raises(PortkeyNotFoundError) as raised:
        hook.get_run_step(SEED_THREAD_ID, SEED_RUN_ID, "step_nope")
    assert raised.value.status == 404
    assert "No run step found with id 'step_nope'." in (raised.value.api_message or "")
    assert sleeps == []  # not retried
    assert _step_requests(through_gateway, "step_nope") == 1


def test_upstream_429_is_retried_after_its_retry_after(
    through_gateway: EmulatorServer, sleeps: list[float]
) -> None:
    through_gateway.state.add_fault(
        "status", status=429, headers={"Retry-After": "7"}, path_contains=f"/steps/{STEP_INSTANT}"
    )
    with PortkeyHook() as hook:
        step = hook.get_run_step(SEED_THREAD_ID, SEED_RUN_ID, STEP_INSTANT)
    assert step.status == "completed"
    assert sleeps == [7.0]  # the first backoff is at most 1 s: the wait is the server's
    assert _step_requests(through_gateway, STEP_INSTANT) == 2


def test_upstream_503_is_retried_until_it_succeeds(
    through_gateway: EmulatorServer, sleeps: list[float]
) -> None:
    through_gateway.state.add_fault("status", status=503, times=2, path_contains=f"/steps/{STEP_INSTANT}")
    with PortkeyHook() as hook:
        step = hook.get_run_step(SEED_THREAD_ID, SEED_RUN_ID, STEP_INSTANT)
    assert step.status == "completed"
    assert len(sleeps) == 2
    assert _step_requests(through_gateway, STEP_INSTANT) == 3


# -- the sensor and its trigger -----------------------------------------------------------------------


def _sensor(**kwargs: Any) -> RunStepSensor:
    return RunStepSensor(
        task_id="wait_for_step",
        thread_id=SEED_THREAD_ID,
        run_id=SEED_RUN_ID,
        step_id=STEP_COMPLETES,
        poke_interval=0.01,
        timeout=60,
        **kwargs,
    )


def test_poke_mode_sensor_waits_for_the_step_through_the_gateway(
    through_gateway: EmulatorServer, sleeps: list[float]
) -> None:
    result = _sensor(deferrable=False).execute(CONTEXT)
    assert result == _seed_json(through_gateway, STEP_COMPLETES)
    assert result["status"] == "completed"
    assert sleeps == [0.01, 0.01]  # two pokes saw in_progress
    assert _step_requests(through_gateway, STEP_COMPLETES) == 3


async def _run_to_event(trigger: RunStepTrigger) -> dict[str, Any]:
    try:
        events = [event async for event in trigger.run()]
    finally:
        await close_shared_client()
    [event] = events
    return cast(dict[str, Any], event.payload)


def test_deferrable_sensor_waits_on_its_trigger_through_the_gateway(
    through_gateway: EmulatorServer,
) -> None:
    sensor = _sensor(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(CONTEXT)
    trigger = deferred.value.trigger
    assert isinstance(trigger, RunStepTrigger)
    assert_no_secret(trigger.serialize())
    # A transient upstream error on the triggerer's side is retried, not turned into a failure.
    through_gateway.state.add_fault("status", status=503, path_contains=f"/steps/{STEP_COMPLETES}")
    event = asyncio.run(_run_to_event(trigger))
    assert event["status"] == "success", event
    result = sensor.execute_complete(CONTEXT, event)
    assert result == _seed_json(through_gateway, STEP_COMPLETES)
    assert _step_requests(through_gateway, STEP_COMPLETES) == 4  # 1 poke + 503 + 2 trigger polls


# -- example DAG 1 under Airflow ------------------------------------------------------------------------


def test_example_dag_runs_through_the_gateway_in_poke_and_deferrable_mode(
    portkey_gateway: PortkeyGateway, airflow_template_db: Path, tmp_path: Path
) -> None:
    with EmulatorServer(mode="openai") as poke_upstream, EmulatorServer(mode="openai") as deferred_upstream:

        def run(upstream: EmulatorServer, deferrable: bool) -> DagRunResult:
            return run_dag(
                airflow_template_db,
                tmp_path / ("deferrable" if deferrable else "poke"),
                "portkey_wait_and_branch",
                connection=_connection(portkey_gateway, upstream),
                deferrable=deferrable,
            )

        with ThreadPoolExecutor(max_workers=2) as pool:
            poke = pool.submit(run, poke_upstream, False)
            deferred = pool.submit(run, deferred_upstream, True)
            runs = {
                "poke": (poke.result(), poke_upstream),
                "deferrable": (deferred.result(), deferred_upstream),
            }

    for mode, (result, upstream) in runs.items():
        assert (result.returncode, result.run_state) == (0, "success"), result.describe()
        assert result.states() == {
            "wait_for_step": "success",
            "branch_on_status": "success",
            "report_output": "success",
            "report_failure": "skipped",
        }, mode
        assert result.xcom("wait_for_step") == _seed_json(upstream, STEP_COMPLETES), mode
        assert result.xcom("report_output")["status"] == "completed"
        assert result.deferred_tasks == (["wait_for_step"] if mode == "deferrable" else []), mode
        authorizations = {r.headers["authorization"] for r in upstream.state.requests}
        assert authorizations == {f"Bearer {PROVIDER_KEY}"}, mode
        # Minus Airflow's own MaskSecret registration lines (DEBUG on Airflow 3.0): they carry the
        # secret by design; every other line of the output is checked.
        assert_no_secret(without_mask_secret_requests(result.output), result.xcoms)
        assert result.python_warnings() == []
