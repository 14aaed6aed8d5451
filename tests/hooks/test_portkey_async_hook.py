"""PortkeyAsyncHook against the emulator: the same core as the sync hook, one httpx client per loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from airflow_provider_portkey.emulator import (
    STEP_COMPLETES,
    STEP_INSTANT,
    EmulatorServer,
)
from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyAuthError,
    PortkeyBadResponseError,
    PortkeyClientError,
    PortkeyConfigurationError,
    PortkeyConnectionError,
    PortkeyError,
    PortkeyGuardrailError,
    PortkeyLimitExhaustedError,
    PortkeyNotFoundError,
    PortkeyRateLimitError,
    PortkeyRedirectError,
    PortkeyRequestError,
    PortkeyServerError,
)
from airflow_provider_portkey.hooks.base import user_agent
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook, close_shared_client, shared_client
from airflow_provider_portkey.models import RunStep, RunStepStatus
from airflow_provider_portkey.protocol import run_step_request
from tests.conftest import PortkeyConnection
from tests.hooks.support import R, T, use_connection
from tests.support.airflow_compat import redact
from tests.support.secrets import API_KEY, PROVIDER_KEY, VIRTUAL_KEY, assert_no_secret


@pytest_asyncio.fixture(autouse=True)
async def _close_client_after_each_test() -> AsyncIterator[None]:
    yield
    await close_shared_client()


@pytest.fixture
def no_wait(monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection) -> PortkeyConnection:
    """The emulator connection with max_retry_wait 0: retries happen, but the loop never really waits."""
    use_connection(monkeypatch, portkey_conn, extra={"max_retry_wait": 0})
    return portkey_conn


@pytest.mark.asyncio
async def test_get_run_step_returns_a_typed_step(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    step = await PortkeyAsyncHook().get_run_step(T, R, STEP_INSTANT)
    assert isinstance(step, RunStep)
    assert step.status is RunStepStatus.COMPLETED
    assert step.to_json() == emulator.state.retrieve_step(T, R, STEP_INSTANT)


@pytest.mark.asyncio
async def test_connection_comes_from_the_env_var_through_get_async_connection(
    portkey_conn: PortkeyConnection,
) -> None:
    settings = await PortkeyAsyncHook().get_settings()
    assert settings.base_url == portkey_conn.base_url
    assert settings.api_key == API_KEY
    assert settings.virtual_key == VIRTUAL_KEY
    assert settings.max_retry_wait == 2.0


@pytest.mark.asyncio
async def test_bad_connection_is_a_configuration_error_before_any_request(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"virtual_key": None})
    with pytest.raises(PortkeyConfigurationError, match="choose the upstream"):
        await PortkeyAsyncHook().get_run_step(T, R, STEP_INSTANT)
    assert emulator.state.requests == []


@pytest.mark.asyncio
async def test_async_and_sync_hooks_send_the_same_headers(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    extra = {"provider": "openai", "provider_api_key": PROVIDER_KEY, "request_timeout": 9, "config": "pc-1"}
    use_connection(monkeypatch, portkey_conn, extra=extra)
    await PortkeyAsyncHook(trace_id="same-trace").get_run_step(T, R, STEP_INSTANT)
    with PortkeyHook(trace_id="same-trace") as hook:
        hook.get_run_step(T, R, STEP_INSTANT)
        request_headers = run_step_request(T, R, STEP_INSTANT).headers
        expected = {
            name.lower(): value
            for name, value in hook.settings.headers(
                user_agent(), trace_id="same-trace", request_headers=request_headers
            ).items()
        }
    async_request, sync_request = emulator.state.requests
    assert async_request.path == sync_request.path
    assert async_request.query == sync_request.query
    for request in (async_request, sync_request):
        assert {name: request.headers.get(name) for name in expected} == expected
    assert expected["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert expected["openai-beta"] == "assistants=v2"


FAULTS: list[tuple[str, dict[str, Any], type[PortkeyRequestError]]] = [
    ("reset", {}, PortkeyConnectionError),
    ("truncated", {}, PortkeyConnectionError),
    ("status", {"status": 408}, PortkeyServerError),
    ("status", {"status": 429, "headers": {"Retry-After": "1"}}, PortkeyRateLimitError),
    ("status", {"status": 500}, PortkeyServerError),
    ("status", {"status": 502}, PortkeyServerError),
    ("status", {"status": 503}, PortkeyServerError),
    ("status", {"status": 504}, PortkeyServerError),
    ("status", {"status": 400}, PortkeyClientError),
    ("status", {"status": 401}, PortkeyAuthError),
    ("status", {"status": 403}, PortkeyAuthError),
    ("status", {"status": 404}, PortkeyNotFoundError),
    (
        "status",
        {"status": 412, "body": {"status": "failure", "message": "Budget exhausted"}},
        PortkeyLimitExhaustedError,
    ),
    ("status", {"status": 422}, PortkeyClientError),
    (
        "status",
        {"status": 446, "body": {"status": "failure", "message": "Guardrail denied"}},
        PortkeyGuardrailError,
    ),
    ("redirect", {"status": 307, "location": "http://127.0.0.1:9/elsewhere"}, PortkeyRedirectError),
    ("malformed", {"body": "<html>not json</html>"}, PortkeyBadResponseError),
    (
        "malformed",
        {"body": {"object": "thread.run", "id": "run_1", "status": "queued"}},
        PortkeyBadResponseError,
    ),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: f"{fault[0]}-{fault[1].get('status', '')}")
async def test_async_and_sync_hooks_raise_the_same_error_for_the_same_fault(
    no_wait: PortkeyConnection,
    emulator: EmulatorServer,
    sleeps: list[float],
    fault: tuple[str, dict[str, Any], type[PortkeyRequestError]],
) -> None:
    kind, options, error_class = fault
    attempts = 6 if error_class.transient else 1  # max_retries 5 from the default
    emulator.state.add_fault(kind, times=attempts, **options)  # type: ignore[arg-type]
    with pytest.raises(error_class) as async_caught:
        await PortkeyAsyncHook().get_run_step(T, R, STEP_INSTANT)
    assert len(emulator.state.requests) == attempts

    emulator.state.add_fault(kind, times=attempts, **options)  # type: ignore[arg-type]
    with PortkeyHook() as hook, pytest.raises(error_class) as sync_caught:
        hook.get_run_step(T, R, STEP_INSTANT)
    assert len(emulator.state.requests) == 2 * attempts

    async_error, sync_error = async_caught.value, sync_caught.value
    assert type(async_error) is type(sync_error) is error_class
    assert (async_error.status, async_error.api_message, async_error.description) == (
        sync_error.status,
        sync_error.api_message,
        sync_error.description,
    )


@pytest.mark.asyncio
async def test_transient_failures_are_retried_then_succeed(
    no_wait: PortkeyConnection, emulator: EmulatorServer
) -> None:
    emulator.state.add_fault("status", status=503, times=2)
    emulator.state.add_fault("reset", times=1)
    step = await PortkeyAsyncHook().get_run_step(T, R, STEP_INSTANT)
    assert step.succeeded
    assert len(emulator.state.requests) == 4


@pytest.mark.asyncio
async def test_hook_arguments_set_the_number_of_attempts(
    no_wait: PortkeyConnection, emulator: EmulatorServer
) -> None:
    emulator.state.add_fault("status", status=502, times=10)
    with pytest.raises(PortkeyServerError):
        await PortkeyAsyncHook(max_retries=2).get_run_step(T, R, STEP_INSTANT)
    assert len(emulator.state.requests) == 3


@pytest.mark.asyncio
async def test_read_timeout_is_enforced(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    use_connection(
        monkeypatch, portkey_conn, extra={"read_timeout": 0.2, "max_retries": 1, "max_retry_wait": 0}
    )
    emulator.state.add_fault("delay", delay=5, times=2)
    started = time.monotonic()
    with pytest.raises(PortkeyConnectionError, match="ReadTimeout"):
        await PortkeyAsyncHook().get_run_step(T, R, STEP_INSTANT)
    assert time.monotonic() - started < 3
    assert len(emulator.state.requests) == 2


@pytest.mark.asyncio
async def test_connect_timeout_is_enforced(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, stalled_port: int
) -> None:
    use_connection(
        monkeypatch,
        portkey_conn,
        host=f"http://127.0.0.1:{stalled_port}",
        extra={"connect_timeout": 0.2, "max_retries": 0},
    )
    started = time.monotonic()
    with pytest.raises(PortkeyConnectionError, match="ConnectTimeout") as caught:
        await PortkeyAsyncHook().get_run_step(T, R, STEP_INSTANT)
    assert time.monotonic() - started < 3
    assert f"http://127.0.0.1:{stalled_port}/v1" in str(caught.value)


@pytest.mark.asyncio
async def test_redirect_is_never_followed(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, redirect_target: EmulatorServer
) -> None:
    location = f"{redirect_target.base_url}/threads/{T}/runs/{R}/steps/{STEP_INSTANT}"
    emulator.state.add_fault("redirect", status=302, location=location)
    with pytest.raises(PortkeyRedirectError, match=location):
        await PortkeyAsyncHook().get_run_step(T, R, STEP_INSTANT)
    assert redirect_target.state.requests == []


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", [None, "", "None", "../runs", "a/b", "a b", "ünï", "x" * 300])
async def test_bad_id_is_refused_before_any_request(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer, bad: Any
) -> None:
    with pytest.raises(InvalidIdError, match="step_id"):
        await PortkeyAsyncHook().get_run_step(T, R, bad)
    assert emulator.state.requests == []


@pytest.mark.asyncio
async def test_hooks_on_one_loop_share_one_client_and_one_connection(
    portkey_conn: PortkeyConnection, emulator: EmulatorServer
) -> None:
    client = shared_client()
    first, second = PortkeyAsyncHook(), PortkeyAsyncHook()
    await first.get_run_step(T, R, STEP_INSTANT)
    await second.get_run_step(T, R, STEP_COMPLETES)
    await asyncio.gather(*(hook.get_run_step(T, R, STEP_INSTANT) for hook in (first, second)))
    assert shared_client() is client
    assert not client.is_closed
    assert len(emulator.state.requests) == 4
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert 1 <= len(pool.connections) <= 2  # kept alive and reused, not one per request


@pytest.mark.asyncio
async def test_close_shared_client_closes_it_and_the_next_request_gets_a_new_one(
    portkey_conn: PortkeyConnection,
) -> None:
    hook = PortkeyAsyncHook()
    await hook.get_run_step(T, R, STEP_INSTANT)
    client = shared_client()
    await close_shared_client()
    assert client.is_closed
    await hook.get_run_step(T, R, STEP_INSTANT)
    replacement = shared_client()
    assert replacement is not client
    assert not replacement.is_closed
    await close_shared_client()
    await close_shared_client()  # closing twice is harmless


@pytest.mark.asyncio
async def test_each_event_loop_has_its_own_client() -> None:
    here = shared_client()
    seen: list[httpx.AsyncClient] = []

    async def on_other_loop() -> None:
        seen.append(shared_client())
        await close_shared_client()

    thread = threading.Thread(target=asyncio.run, args=(on_other_loop(),))
    thread.start()
    thread.join(timeout=10)
    (there,) = seen
    assert there is not here
    assert there.is_closed
    assert not here.is_closed


@pytest.mark.asyncio
async def test_no_key_in_logs_errors_or_reprs_on_the_async_path(
    monkeypatch: pytest.MonkeyPatch,
    portkey_conn: PortkeyConnection,
    emulator: EmulatorServer,
    all_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra = {"provider": "openai", "provider_api_key": PROVIDER_KEY, "max_retries": 1, "max_retry_wait": 0}
    use_connection(monkeypatch, portkey_conn, extra=extra)
    all_logs.set_level(logging.DEBUG, logger="httpx")  # Airflow quiets it to WARNING
    hook = PortkeyAsyncHook(trace_id="leak-check")
    errors: list[BaseException] = []
    await hook.get_run_step(T, R, STEP_INSTANT)
    for kind, options in [
        ("status", {"status": 429, "times": 2}),
        ("status", {"status": 401, "body": {"error": {"message": f"bad key {PROVIDER_KEY}"}}}),
        ("reset", {"times": 2}),
        ("malformed", {"body": f"{API_KEY} {VIRTUAL_KEY}"}),
        # (not a Location echoing a key: httpcore logs response headers verbatim at DEBUG)
        ("redirect", {"location": "http://127.0.0.1:9/elsewhere"}),
    ]:
        emulator.state.add_fault(kind, **options)  # type: ignore[arg-type]
        try:
            await hook.get_run_step(T, R, STEP_INSTANT)
        except PortkeyError as error:
            errors.append(error)
    assert len(errors) == 5
    settings = await hook.get_settings()
    logged = capsys.readouterr()
    assert "retry 1 of 1" in logged.out
    messages = [record.getMessage() for record in all_logs.records]
    assert any(message.startswith("HTTP Request: GET") for message in messages)  # httpx's own lines
    assert any(message.startswith("send_request_headers") for message in messages)  # httpcore's
    for raised in errors:
        assert_no_secret(str(raised), repr(raised))
    assert_no_secret(repr(hook), repr(settings), all_logs.text, logged.out, logged.err)


class _Monotonic:
    """A monotonic clock that moves only when told (the seam of the connection-reuse window)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_hooks_made_soon_after_each_other_share_one_read_of_the_connection(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, mocker: Any
) -> None:
    from airflow_provider_portkey.hooks import portkey_async

    clock = _Monotonic()
    mocker.patch.object(portkey_async, "time", clock)
    first = await PortkeyAsyncHook().get_settings()
    use_connection(monkeypatch, portkey_conn, extra={"max_retry_wait": 7})  # an edit of the connection

    clock.now += portkey_async.CONNECTION_REUSE_SECONDS
    again = await PortkeyAsyncHook().get_settings()
    overridden = await PortkeyAsyncHook(max_retries=0).get_settings()
    clock.now += 0.001
    edited = await PortkeyAsyncHook().get_settings()

    assert again is first
    assert first.max_retry_wait == 2.0
    assert (overridden.max_retries, overridden.max_retry_wait) == (0, 2.0)  # its own override, shared read
    assert edited.max_retry_wait == 7.0  # read again once the window has passed


@pytest.mark.asyncio
async def test_hooks_starting_together_read_the_connection_once_and_a_failed_read_is_not_reused(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"max_retry_wait": -1})
    outcomes = await asyncio.gather(
        *(PortkeyAsyncHook().get_settings() for _ in range(3)), return_exceptions=True
    )
    use_connection(monkeypatch, portkey_conn)  # fixed right away: the failure is not served again
    together = await asyncio.gather(*(PortkeyAsyncHook().get_settings() for _ in range(3)))

    assert all(isinstance(outcome, PortkeyConfigurationError) for outcome in outcomes)
    assert "max_retry_wait" in str(outcomes[0])
    assert together[0] is together[1] is together[2]
    assert together[0].max_retry_wait == 2.0


@pytest.mark.asyncio
async def test_async_hook_registers_the_keys_with_the_secret_masker(
    monkeypatch: pytest.MonkeyPatch, portkey_conn: PortkeyConnection, fresh_masker: None
) -> None:
    use_connection(monkeypatch, portkey_conn, extra={"provider": "openai", "provider_api_key": PROVIDER_KEY})
    line = f"{API_KEY} {VIRTUAL_KEY} {PROVIDER_KEY}"
    assert redact(line) == line
    await PortkeyAsyncHook().get_settings()
    assert redact(line) == "*** *** ***"
