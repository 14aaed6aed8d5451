"""Helpers of the fault and abuse suite: the fault catalogue, a resetting relay, task factories.

The catalogue (:data:`TRANSIENT` and :data:`PERMANENT`) is what ``docs/reliability.md`` tabulates:
each entry knows how to make the emulator (or the relay in front of it) misbehave, which error
the hook raises for it, and what the hook waits between its attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_THREAD_ID, EmulatorServer
from airflow_provider_portkey.errors import (
    PortkeyBadResponseError,
    PortkeyConnectionError,
    PortkeyRateLimitError,
    PortkeyRequestError,
    PortkeyServerError,
)
from airflow_provider_portkey.operators.run_step import GetRunStepOperator
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from tests.sensors.support import FakeClock
from tests.support.secrets import API_KEY, VIRTUAL_KEY

T, R = SEED_THREAD_ID, SEED_RUN_ID

#: Retries the fault suite's connection allows: every transient fault costs 3 attempts per check.
MAX_RETRIES = 2
ATTEMPTS = MAX_RETRIES + 1
#: Seconds a ``read_timeout`` fault waits for; the connection reads for at most this long.
READ_TIMEOUT = 0.3
POKE_INTERVAL = 5.0


# -- a relay that resets connections mid-response ---------------------------------------------------


class ResetRelay:
    """
    A loopback relay in front of the emulator that cuts the next ``cuts`` responses with a TCP RST.

    A cut response has its head and the first bytes of its body relayed, then the client's socket
    is closed with ``SO_LINGER 0``: the connection is reset in the middle of the response. Every
    other response is relayed whole (keep-alive kept). The emulator still records each request.
    """

    BODY_BYTES_BEFORE_RESET = 10

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cuts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept, name="reset-relay", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, times: int) -> None:
        with self._lock:
            self.cuts += times

    def _take_cut(self) -> bool:
        with self._lock:
            if self.cuts <= 0:
                return False
            self.cuts -= 1
            return True

    def __enter__(self) -> ResetRelay:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10) as upstream:
            client.settimeout(10)
            with self._lock:
                self._sockets.update((client, upstream))
            try:
                self._relay(client, upstream)
            except OSError:
                pass
            finally:
                with self._lock:
                    self._sockets.difference_update((client, upstream))

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        pending = b""
        while not self._stop.is_set():
            request = _read_message(client, pending)
            if request is None:
                return
            message, pending = request
            upstream.sendall(message)
            response = _read_message(upstream, b"")
            if response is None:
                return
            answer, _ = response
            if self._take_cut():
                head_end = answer.index(b"\r\n\r\n") + 4
                client.sendall(answer[: head_end + self.BODY_BYTES_BEFORE_RESET])
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closing with linger 0 sends the RST
            client.sendall(answer)


def _read_message(sock: socket.socket, data: bytes) -> tuple[bytes, bytes] | None:
    """One HTTP/1.1 message with a Content-Length body (or none) and the bytes after it; None at EOF."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


# -- the fault catalogue ------------------------------------------------------------------------------


@dataclass
class Env:
    """Where faults are injected: the emulator and the resetting relay in front of it."""

    emulator: EmulatorServer
    relay: ResetRelay


HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
HTML_200 = "<!DOCTYPE html><html><body><h1>Please sign in to the corporate proxy</h1></body></html>"
TRUNCATED_JSON = '{"id": "step_1", "object": "thread.run.step", "status"'
WRONG_SHAPE = {"object": "thread.run", "id": "run_1", "status": "queued"}


@dataclass(frozen=True)
class FaultCase:
    """One fault or bad answer, how to cause it, and what the hook makes of it."""

    name: str
    inject: Callable[[Env, int], None]
    error: type[PortkeyRequestError]
    #: Words the error message must contain (what happened, in the user's terms).
    message: tuple[str, ...]
    #: Connection extras this fault needs (a short read timeout).
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``Retry-After`` the server sends, in seconds from now (``None``: none).
    retry_after: float | None = None
    #: ``Retry-After`` is sent as an HTTP date rather than delta-seconds.
    http_date: bool = False
    #: Where the hook-level behaviour of this fault is already proven, if it is.
    hook_test: str | None = None
    #: The fault needs the resetting relay between the client and the emulator.
    via_relay: bool = False
    #: The emulator answered (then the answer was spoilt): each faulted attempt moves a step on.
    answered: bool = False

    def __str__(self) -> str:
        return self.name

    @property
    def transient(self) -> bool:
        return self.error.transient

    def hook_waits_ok(self, waits: list[float], attempts: int = ATTEMPTS) -> bool:
        """Whether ``waits`` are what the hook should wait between ``attempts`` (jitter off)."""
        if len(waits) != attempts - 1:
            return False
        if self.retry_after is None:
            return waits == [min(60.0, 2.0**n) for n in range(attempts - 1)]
        return all(self.floor_ok(wait) for wait in waits)

    def floor_ok(self, wait: float, at_least: float = 0.0) -> bool:
        """Whether ``wait`` honours this fault's ``Retry-After`` (an HTTP date has 1 s resolution)."""
        wanted = max(at_least, self.retry_after or 0.0)
        slack = 2.5 if self.http_date else 0.0
        return wanted - slack <= wait <= wanted


def _status(
    status: int,
    *,
    retry_after: float | None = None,
    http_date: bool = False,
    body: str | None = None,
    content_type: str | None = None,
) -> Callable[[Env, int], None]:
    def inject(env: Env, times: int) -> None:
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = (
                formatdate(time.time() + retry_after, usegmt=True) if http_date else f"{retry_after:g}"
            )
        if content_type:
            headers["Content-Type"] = content_type
        env.emulator.state.add_fault("status", status=status, headers=headers, body=body, times=times)

    return inject


def _kind(kind: str, **options: Any) -> Callable[[Env, int], None]:
    def inject(env: Env, times: int) -> None:
        env.emulator.state.add_fault(kind, times=times, **options)  # type: ignore[arg-type]

    return inject


def _relay_cut(env: Env, times: int) -> None:
    env.relay.cut(times)


HOOK_TESTS = "tests/hooks/test_portkey_hook.py::"
TRANSIENT: list[FaultCase] = [
    FaultCase(
        "429-retry-after-seconds",
        _status(429, retry_after=3),
        PortkeyRateLimitError,
        ("rate limited", "HTTP 429"),
        retry_after=3,
        hook_test=HOOK_TESTS + "test_retry_after_seconds_is_honoured",
    ),
    FaultCase(
        "429-retry-after-http-date",
        _status(429, retry_after=30, http_date=True),
        PortkeyRateLimitError,
        ("rate limited", "HTTP 429"),
        retry_after=30,
        http_date=True,
        hook_test=HOOK_TESTS + "test_retry_after_http_date_is_honoured",
    ),
    *(
        FaultCase(
            str(status),
            _status(status),
            PortkeyServerError,
            ("server error", f"HTTP {status}", "Emulated fault"),
            hook_test=HOOK_TESTS + "test_transient_failure_gives_up_after_max_retries_from_the_connection",
        )
        for status in (500, 502, 503, 504)
    ),
    FaultCase(
        "html-502-from-a-proxy",
        _status(502, body=HTML_502, content_type="text/html"),
        PortkeyServerError,
        ("HTTP 502", "502 Bad Gateway", "nginx"),
    ),
    FaultCase(
        "reset-before-the-response",
        _kind("reset"),
        PortkeyConnectionError,
        ("no usable answer",),
        hook_test=HOOK_TESTS + "test_transient_failure_gives_up_after_max_retries_from_the_connection",
    ),
    FaultCase(
        "reset-mid-response",
        _relay_cut,
        PortkeyConnectionError,
        ("no usable answer",),
        via_relay=True,
        answered=True,
    ),
    FaultCase(
        "truncated-body-then-eof",
        _kind("truncated"),
        PortkeyConnectionError,
        ("no usable answer",),
        answered=True,
        hook_test=HOOK_TESTS + "test_transient_failure_gives_up_after_max_retries_from_the_connection",
    ),
    FaultCase(
        "read-timeout",
        # Long enough that the late answer never lands while the test runs (the emulator stops first).
        _kind("delay", delay=60),
        PortkeyConnectionError,
        ("no usable answer", "ReadTimeout"),
        extra={"read_timeout": READ_TIMEOUT},
        hook_test=HOOK_TESTS + "test_read_timeout_is_enforced_then_retried_then_a_connection_error",
    ),
    FaultCase(
        "slow-drip-slower-than-the-read-timeout",
        _kind("slow_drip", delay=60),
        PortkeyConnectionError,
        # requests reports a read timeout in the middle of a body as a ConnectionError.
        ("no usable answer",),
        extra={"read_timeout": READ_TIMEOUT},
        answered=True,
    ),
]

PERMANENT: list[FaultCase] = [
    FaultCase(
        "html-200-from-a-proxy",
        _kind("malformed", body=HTML_200, headers={"Content-Type": "text/html"}),
        PortkeyBadResponseError,
        ("the body is not JSON", "corporate proxy"),
    ),
    FaultCase(
        "truncated-json",
        _kind("malformed", body=TRUNCATED_JSON),
        PortkeyBadResponseError,
        ("the body is not JSON", '{"id": "step_1"'),
        hook_test=HOOK_TESTS + "test_body_that_is_not_json_is_a_bad_response_quoting_an_excerpt",
    ),
    FaultCase(
        "json-of-the-wrong-shape",
        _kind("malformed", body=WRONG_SHAPE),
        PortkeyBadResponseError,
        ("unexpected JSON", "object", "thread.run"),
        hook_test=HOOK_TESTS + "test_json_that_is_not_a_run_step_is_a_bad_response",
    ),
    FaultCase(
        "json-array",
        _kind("malformed", body=[]),
        PortkeyBadResponseError,
        ("unexpected JSON", "not a JSON object"),
        hook_test=HOOK_TESTS + "test_json_that_is_not_an_object_is_a_bad_response",
    ),
    FaultCase(
        "200-with-an-empty-body",
        _kind("malformed", body=b""),
        PortkeyBadResponseError,
        ("the body is not JSON", "''"),
        hook_test=HOOK_TESTS + "test_body_that_is_not_json_is_a_bad_response_quoting_an_excerpt",
    ),
]

ALL_FAULTS = TRANSIENT + PERMANENT


# -- tasks ------------------------------------------------------------------------------------------


def sensor(step_id: str, *, dag_id: str = "reliability_sensor", **kwargs: Any) -> RunStepSensor:
    options: dict[str, Any] = {"poke_interval": POKE_INTERVAL, "timeout": 600, "mode": "poke"}
    options.update(kwargs)
    with DAG(dag_id, schedule=None):
        return RunStepSensor(task_id="wait", thread_id=T, run_id=R, step_id=step_id, **options)


def operator(step_id: str, *, dag_id: str = "reliability_operator", **kwargs: Any) -> GetRunStepOperator:
    with DAG(dag_id, schedule=None):
        return GetRunStepOperator(task_id="get_step", thread_id=T, run_id=R, step_id=step_id, **kwargs)


def step_gets(emulator: EmulatorServer, step_id: str) -> int:
    return sum(1 for request in emulator.state.requests if request.path.endswith(f"/steps/{step_id}"))


def as_sent(emulator: EmulatorServer, step_id: str, thread_id: str = T, run_id: str = R) -> dict[str, Any]:
    """The step as the emulator last sent it (a list render shows the latest retrieve, unchanged)."""
    steps = emulator.state.list_steps(thread_id, run_id)
    assert steps is not None
    return next(step for step in steps if step["id"] == step_id)


#: Modules whose ``time`` the sensors and triggers wait with (the shared loop lives in ``base``).
CLOCK_MODULES = (
    "airflow_provider_portkey.sensors.base",
    "airflow_provider_portkey.triggers.base",
    "airflow_provider_portkey.sensors.run_step",
    "airflow_provider_portkey.triggers.run_step",
    "airflow.sdk.bases.sensor",
    "airflow_provider_portkey.retries",  # the hooks' retry deadline (a sensor's or trigger's own)
)


def patch_clock(mocker: Any) -> FakeClock:
    """
    Fake time for the sensor, Airflow's sensor loop and the trigger (as ``tests.sensors`` does).

    Unlike that fixture, ``asyncio.sleep`` is faked on the test's own thread only: the emulator's
    event loop (another thread) keeps real sleeps, so its ``delay`` and ``slow_drip`` faults work.
    """
    fake = FakeClock(time.time())
    patched = []
    for name in CLOCK_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        if getattr(module, "time", None) is time:  # wherever the waiting code reads the clock
            mocker.patch.object(module, "time", fake)
            patched.append(name)
    assert any(name.startswith("airflow_provider_portkey.") for name in patched), patched
    here = threading.current_thread()
    real_sleep = asyncio.sleep

    async def sleep(seconds: float, result: Any = None) -> Any:
        if threading.current_thread() is not here:
            return await real_sleep(seconds, result)
        return await fake.async_sleep(seconds, result)

    mocker.patch("asyncio.sleep", sleep)
    return fake


def parametrize_faults(cases: list[FaultCase]) -> Any:
    return pytest.mark.parametrize("fault", cases, ids=str)


def use_connection(
    monkeypatch: pytest.MonkeyPatch, host: str, conn_id: str = "portkey_default", **extra: Any
) -> None:
    """Point ``conn_id`` at ``host`` with the suite's keys and the given extra options."""
    fields = {
        "conn_type": "portkey",
        "host": host,
        "password": API_KEY,
        "extra": {"virtual_key": VIRTUAL_KEY, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
