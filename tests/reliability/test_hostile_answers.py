"""Answers built to hurt the client: endless Retry-After, keys echoed in id headers, absurd nesting."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.errors import InvalidIdError, PortkeyBadResponseError, PortkeyServerError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.protocol import interpret_response, run_step_request, validate_id
from tests.reliability.support import POKE_INTERVAL, R, T, sensor, use_connection
from tests.sensors.support import FakeClock, make_context
from tests.support.airflow_compat import AirflowRescheduleException, AirflowSensorTimeout
from tests.support.secrets import API_KEY, SECRETS, assert_no_secret


@pytest.mark.parametrize("retry_after", ["3600", "inf", "huge-date"])
@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_huge_retry_after_never_makes_the_sensor_wait_past_its_timeout(
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    mode: str,
    retry_after: str,
) -> None:
    if retry_after == "huge-date":
        retry_after = formatdate(time.time() + 3600, usegmt=True)
    use_connection(monkeypatch, emulator.url, max_retries=0, max_retry_wait=2)
    emulator.state.add_step(T, R, "step_stuck", statuses=("in_progress",))
    emulator.state.add_fault("status", status=429, headers={"Retry-After": retry_after}, times=100)
    task = sensor("step_stuck", timeout=60, mode=mode)
    if mode == "poke":
        with pytest.raises(AirflowSensorTimeout):
            task.execute(make_context())
        # At most one ordinary poke interval past the timeout, as without any Retry-After.
        assert sum(clock.sleeps) <= 60 + POKE_INTERVAL
    else:
        with pytest.raises(AirflowRescheduleException) as raised:
            task.execute(make_context())
        assert raised.value.reschedule_date <= datetime.now(UTC) + timedelta(seconds=61)


@pytest.mark.parametrize("header", ["x-request-id", "x-portkey-trace-id"])
def test_a_key_echoed_in_a_response_id_header_never_reaches_the_error(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, sleeps: list[float], header: str
) -> None:
    use_connection(monkeypatch, emulator.url, max_retries=0)
    emulator.state.add_fault("status", status=500, headers={header: API_KEY})
    with PortkeyHook() as hook, pytest.raises(PortkeyServerError) as raised:
        hook.get_run_step(T, R, "step_instant")
    assert_no_secret(str(raised.value))


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000])
def test_deeply_nested_json_is_a_bad_response_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(PortkeyBadResponseError):
        interpret_response(run_step_request("t", "r", "s"), 200, {}, body, SECRETS)


def test_a_huge_bad_id_is_quoted_short() -> None:
    with pytest.raises(InvalidIdError) as raised:
        validate_id("step_id", "x" * 100_000)
    assert len(str(raised.value)) < 500
    assert "step_id" in str(raised.value)
