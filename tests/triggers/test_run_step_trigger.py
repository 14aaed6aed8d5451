"""RunStepTrigger on its own, run with asyncio against the live emulator.

The ``clock`` fixture replaces ``asyncio.sleep`` (recording every wait: the trigger's polls and the
async hook's retries) and the trigger's ``time``; the cancellation test uses real sleeps instead.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import pytest_asyncio

from airflow_provider_portkey.emulator import (
    SEED_RUN_ID,
    SEED_THREAD_ID,
    STEP_COMPLETES,
    STEP_FAILS,
    STEP_INSTANT,
    EmulatorServer,
)
from airflow_provider_portkey.hooks import portkey_async
from airflow_provider_portkey.polling import poll_interval
from airflow_provider_portkey.triggers import base as trigger_module  # its `time` is the clock
from airflow_provider_portkey.triggers.run_step import RunStepTrigger
from tests.conftest import PortkeyConnection
from tests.sensors.support import FakeClock, first_event_payload, log_text, plain, recreate_trigger
from tests.support.secrets import assert_no_secret

JITTER_KEY = f"{SEED_THREAD_ID}#{SEED_RUN_ID}#"


@pytest_asyncio.fixture
async def shared_client() -> AsyncIterator[None]:
    """Close the test loop's shared HTTP client at the end, as a triggerer does when it stops."""
    yield
    await portkey_async.close_shared_client()


def trigger(step_id: str = STEP_COMPLETES, *, wait: float = 600, **kwargs: Any) -> RunStepTrigger:
    """A trigger on the seeded run whose deadline is ``wait`` seconds from (possibly fake) now."""
    options: dict[str, Any] = {"poll_interval": 5.0, "fail_on_statuses": ["failed", "cancelled", "expired"]}
    options.update(kwargs)
    deadline = options.pop("deadline", None)
    return RunStepTrigger(
        portkey_conn_id="portkey_default",
        thread_id=SEED_THREAD_ID,
        run_id=SEED_RUN_ID,
        step_id=step_id,
        # The trigger's clock (the shared loop's module): the fake one when the test uses ``clock``.
        deadline=deadline if deadline is not None else trigger_module.time.time() + wait,  # type: ignore[attr-defined]
        **options,
    )


def stuck(emulator: EmulatorServer) -> str:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_stuck", statuses=("in_progress",))
    return "step_stuck"


def step_gets(emulator: EmulatorServer, step_id: str) -> int:
    return sum(1 for r in emulator.state.requests if r.path.endswith(f"/steps/{step_id}"))


# -- one event, of each kind ---------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_success_event_carries_the_step_json_after_in_progress_polls(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    payload = await first_event_payload(trigger(poll_interval=3))

    assert payload["status"] == "success"
    assert payload["step"]["status"] == "completed"
    steps = emulator.state.list_steps(SEED_THREAD_ID, SEED_RUN_ID)
    assert steps is not None
    assert payload["step"] == next(s for s in steps if s["id"] == STEP_COMPLETES)
    assert "is completed" in payload["message"]
    assert clock.sleeps == [3, 3]  # no sensor check before it (polls_done=0): it polls at once
    assert plain(payload)


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_failure_event_for_a_status_in_fail_on_statuses_with_the_step_and_last_error(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    payload = await first_event_payload(trigger(STEP_FAILS))

    assert payload["status"] == "failure"
    assert payload["step"]["status"] == "failed"
    assert payload["step"]["last_error"] == {
        "code": "server_error",
        "message": "Sorry, something went wrong.",
    }
    assert "is failed: server_error: Sorry, something went wrong." in payload["message"]


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_empty_fail_on_statuses_reports_a_failed_step_as_success(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    payload = await first_event_payload(trigger(STEP_FAILS, fail_on_statuses=[]))

    assert payload["status"] == "success"
    assert payload["step"]["status"] == "failed"


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_timeout_event_names_the_last_status_and_never_waits_past_the_deadline(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    payload = await first_event_payload(trigger(stuck(emulator), wait=12, poll_interval=5))

    assert payload == {
        "status": "timeout",
        "message": f"run step step_stuck of run {SEED_RUN_ID} (thread {SEED_THREAD_ID}) reached no "
        "terminal status before the deadline; last status seen: in_progress",
        "last_status": "in_progress",
        "last_error": None,
    }
    assert clock.sleeps == [5, 5, 2]
    assert step_gets(emulator, "step_stuck") == 4  # at 0, 5, 10 and at the deadline


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_timeout_keeps_the_last_status_the_sensor_saw_when_the_trigger_saw_none(
    emulator: EmulatorServer, clock: FakeClock, no_jitter: None
) -> None:
    emulator.state.add_fault("status", path_contains="step_stuck", status=503, times=1000)

    payload = await first_event_payload(
        trigger(stuck(emulator), wait=1, poll_interval=5, last_status="in_progress")
    )

    assert payload["status"] == "timeout"
    assert payload["last_status"] == "in_progress"


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
@pytest.mark.parametrize(
    ("step_id", "unauthorized", "expected"),
    [
        ("step_missing", False, ["HTTP 404", "No run step found with id 'step_missing'"]),
        (STEP_COMPLETES, True, ["HTTP 401", "Invalid API Key"]),
    ],
)
async def test_error_event_at_once_for_a_permanent_error_with_the_hooks_message(
    emulator: EmulatorServer, clock: FakeClock, step_id: str, unauthorized: bool, expected: list[str]
) -> None:
    if unauthorized:
        emulator.state.api_keys = frozenset({"pk-some-other-key"})

    payload = await first_event_payload(trigger(step_id))

    assert payload["status"] == "error"
    for part in expected:
        assert part in payload["message"]
    assert emulator.state.request_count == 1
    assert clock.sleeps == []
    assert_no_secret(payload)


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_a_bad_connection_is_an_error_event_not_a_crash(
    emulator: EmulatorServer, clock: FakeClock, portkey_conn: PortkeyConnection, monkeypatch: Any
) -> None:
    portkey_conn.set(monkeypatch, virtual_key="", provider=None)

    payload = await first_event_payload(trigger())

    assert payload["status"] == "error"
    assert "upstream" in payload["message"]
    assert emulator.state.request_count == 0


# -- waits: Retry-After, backoff, restarts -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_a_floor_for_the_next_poll(
    emulator: EmulatorServer, clock: FakeClock, no_jitter: None, status: int
) -> None:
    emulator.state.add_fault(
        "status", path_contains=STEP_INSTANT, status=status, headers={"Retry-After": "40"}, times=6
    )

    payload = await first_event_payload(trigger(STEP_INSTANT, poll_interval=5))

    assert payload["status"] == "success"
    # The hook retries 5 times (Retry-After capped by max_retry_wait=2), then the trigger waits 40.
    assert clock.sleeps == [2, 2, 2, 2, 2, 40]


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_retry_after_as_an_http_date_is_honoured_too(
    emulator: EmulatorServer, clock: FakeClock, no_jitter: None
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    emulator.state.add_fault(
        "status", path_contains=STEP_INSTANT, status=429, headers={"Retry-After": when}, times=6
    )

    await first_event_payload(trigger(STEP_INSTANT, poll_interval=5))

    assert 100 < clock.sleeps[-1] <= 120


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_exponential_backoff_waits_are_poke_modes_schedule(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    emulator.state.add_step(
        SEED_THREAD_ID, SEED_RUN_ID, "step_slow", statuses=("in_progress",) * 6 + ("completed",)
    )

    await first_event_payload(
        trigger("step_slow", wait=100_000, poll_interval=3, exponential_backoff=True, max_wait=40)
    )

    expected = [
        poll_interval(3, n, exponential_backoff=True, jitter_key=JITTER_KEY + "step_slow", max_wait=40)
        for n in range(1, 7)
    ]
    assert clock.sleeps == expected
    assert expected[-1] == 40  # the cap applies
    assert expected[0] < expected[1] < expected[2]


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_after_the_sensors_check_the_trigger_waits_before_its_first_poll(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    payload = await first_event_payload(
        trigger(STEP_INSTANT, poll_interval=9, polls_done=1, min_first_wait=20)
    )

    assert payload["status"] == "success"
    assert clock.sleeps == [20]


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_recreated_after_its_deadline_it_polls_once_then_times_out(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    step_id = stuck(emulator)
    original = trigger(step_id, wait=60, polls_done=1, last_status="in_progress")
    clock.advance(3600)  # the triggerer was down for an hour

    payload = await first_event_payload(recreate_trigger(original))

    assert payload["status"] == "timeout"
    assert clock.sleeps == []
    assert step_gets(emulator, step_id) == 1


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_recreated_after_its_deadline_a_step_that_finished_meanwhile_still_wins(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    original = trigger(STEP_INSTANT, wait=60, polls_done=1)
    clock.advance(3600)

    payload = await first_event_payload(recreate_trigger(original))

    assert payload["status"] == "success"


# -- resources, connections, secrets -------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.usefixtures("portkey_conn")
async def test_cancelled_mid_sleep_it_stops_cleanly_and_leaves_the_shared_client_usable(
    emulator: EmulatorServer, mocker: Any
) -> None:
    real_sleep = asyncio.sleep
    sleeping = asyncio.Event()

    async def observed_sleep(delay: float, result: Any = None) -> Any:
        sleeping.set()
        return await real_sleep(delay, result)

    mocker.patch("asyncio.sleep", observed_sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = asyncio.create_task(first_event_payload(trigger(poll_interval=3600)))
        await sleeping.wait()
        client = portkey_async.shared_client()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert step_gets(emulator, STEP_COMPLETES) == 1
        assert not client.is_closed  # shared with every other trigger on this loop
        assert portkey_async.shared_client() is client
        await portkey_async.close_shared_client()
        assert client.is_closed
        gc.collect()


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_many_triggers_on_one_loop_share_one_http_client(
    emulator: EmulatorServer, clock: FakeClock, mocker: Any
) -> None:
    import httpx

    created = mocker.spy(httpx.AsyncClient, "__init__")
    triggers = [trigger(step_id) for step_id in ("step_map_1", "step_map_2", "step_map_3")] * 5

    payloads = await asyncio.gather(*(first_event_payload(t) for t in triggers))

    assert [p["status"] for p in payloads] == ["success"] * 15
    assert created.call_count == 1


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_the_connection_is_read_the_async_way_not_through_the_blocking_path(
    emulator: EmulatorServer, clock: FakeClock, mocker: Any
) -> None:
    from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook

    blocking = mocker.patch.object(
        PortkeyAsyncHook, "get_connection", side_effect=AssertionError("sync get_connection on the loop")
    )

    payload = await first_event_payload(trigger(STEP_INSTANT))

    assert payload["status"] == "success"
    blocking.assert_not_called()


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_a_status_is_logged_at_info_when_it_changes_and_at_debug_when_a_poll_sees_it_again(
    emulator: EmulatorServer, clock: FakeClock, debug_logs: list[dict[str, Any]]
) -> None:
    statuses = ("in_progress", "in_progress", "in_progress", "completed")
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_logged", statuses=statuses)

    payload = await first_event_payload(trigger("step_logged"))

    assert payload["status"] == "success"
    lines = [
        (event["log_level"], event["event"])
        for event in debug_logs
        if "step_logged is" in str(event.get("event"))
    ]
    assert lines == [
        ("info", "Step step_logged is in_progress"),
        ("debug", "Step step_logged is in_progress"),
        ("debug", "Step step_logged is in_progress"),
    ]


@pytest.mark.asyncio
@pytest.mark.usefixtures("shared_client", "portkey_conn")
async def test_no_secret_in_kwargs_serialized_form_repr_events_or_debug_logs(
    emulator: EmulatorServer,
    clock: FakeClock,
    no_jitter: None,
    debug_logs: list[dict[str, Any]],
) -> None:
    emulator.state.add_fault("status", path_contains=STEP_COMPLETES, status=503, times=7)
    subject = trigger()

    recreated = recreate_trigger(subject)  # checks kwargs, serde form and repr
    payload = await first_event_payload(recreated)

    assert payload["status"] == "success"
    text = log_text(debug_logs)
    assert "Still waiting on step step_completes after a transient error" in text
    assert "is in_progress" in text
    assert_no_secret(subject.serialize(), repr(subject), vars(recreated), payload, text)
