"""Helpers shared by the sensor, trigger, operator and branching tests.

Fixtures defined here are imported into each folder's ``conftest.py`` (and ``tests/test_branching``):

- ``clock``: a fake clock patched into the sensor and trigger modules (and into Airflow's
  ``BaseSensorOperator``), so poke intervals, timeouts and deadlines pass without waiting. Poke-mode
  sleeps and the trigger's ``asyncio.sleep`` both advance it and are recorded.
- ``debug_logs``: every log event at DEBUG and above, raw (before Airflow's masking), for
  secret-leak checks (structlog's, and on Airflow 3.0 the standard-library task loggers' too).

``run_deferred`` drives a deferrable sensor the way Airflow does: ``execute`` until ``TaskDeferred``,
the trigger's kwargs through Airflow's serde, the trigger re-created from its classpath and
run to its first event on a fresh event loop, the event through serde, then ``resume_execution``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import traceback
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pytest
import structlog
import structlog.testing
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_THREAD_ID, EmulatorServer
from airflow_provider_portkey.hooks.portkey_async import close_shared_client
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from airflow_provider_portkey.triggers.base import PortkeyPollTrigger
from tests.support.airflow_compat import deserialize, import_string, serialize, task_logs_use_stdlib
from tests.support.secrets import assert_no_secret

_real_async_sleep = asyncio.sleep

#: The kwargs a trigger gets on today's path (no ``start_from_trigger``): it resumes the task on a worker.
TODAYS_PATH_KWARGS: dict[str, object] = {
    "timeout": None,
    "start_from_trigger": False,
    "end_task": False,
    "soft_fail": False,
    "never_fail": False,
    "retries": None,
}


class FakeClock:
    """Wall and monotonic time that only move when something sleeps (starting at the real now)."""

    def __init__(self, now: float) -> None:
        self.now = now
        #: Every poke-mode sleep and every ``asyncio.sleep`` (trigger waits and async hook retries).
        self.sleeps: list[float] = []
        self._on_sleep: list[Callable[[int], None]] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - 1_000_000.0

    def on_sleep(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(number_of_sleeps_so_far)`` after each sleep: to change the world mid-wait."""
        self._on_sleep.append(callback)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for callback in self._on_sleep:
            callback(len(self.sleeps))

    async def async_sleep(self, seconds: float, result: Any = None) -> Any:
        self.sleep(seconds)
        await _real_async_sleep(0)  # still yield to the loop, as a real sleep would
        return result


@pytest.fixture
def clock(mocker: Any) -> FakeClock:
    """Fake time for every Portkey sensor and trigger and BaseSensorOperator (``asyncio.sleep`` too)."""
    import time

    fake = FakeClock(time.time())
    for module in (
        # The shared waiting mechanism every Portkey sensor and trigger runs.
        "airflow_provider_portkey.sensors.base",
        "airflow_provider_portkey.triggers.base",
        "airflow.sdk.bases.sensor",
        # The hooks' retry deadline (a sensor's or trigger's own), checked on the same clock.
        "airflow_provider_portkey.retries",
    ):
        mocker.patch(f"{module}.time", fake)
    # The hooks keep the real ``time`` module: patch their retry sleeps with the ``sleeps`` fixture.
    mocker.patch("asyncio.sleep", fake.async_sleep)
    return fake


#: Where operators, hooks and triggers log when they use the standard library (Airflow 3.0): the
#: task loggers (``airflow.task.operators.*``, ``airflow.task.hooks.*``) and our triggers' loggers.
_STDLIB_TASK_LOGGERS = ("airflow.task", "airflow_provider_portkey.triggers")


class _StdlibEvents(logging.Handler):
    """Appends each standard-library record to ``events`` as the event structlog would capture."""

    def __init__(self, events: list[MutableMapping[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        event: dict[str, Any] = {
            "event": record.getMessage(),
            "log_level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[0] is not None:
            event["exception"] = "".join(traceback.format_exception(*record.exc_info))
        self.events.append(event)


@contextmanager
def _capture_stdlib_task_logs(events: list[MutableMapping[str, Any]]) -> Iterator[None]:
    """Add the task loggers' records (DEBUG and above) to ``events`` while the block runs."""
    handler = _StdlibEvents(events)
    loggers = [logging.getLogger(name) for name in _STDLIB_TASK_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


@pytest.fixture
def debug_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """
    Every log event at DEBUG and above while the test runs, unmasked (task runs included).

    These are the structlog events, raw. On Airflow 3.0 operators, hooks and triggers log through
    the standard library instead (``task_logs_use_stdlib``): their records are added to the same
    list, in the same shape (``event``, ``log_level``, ``logger``, ``exception``), also unmasked.
    """
    saved = structlog.get_config()["wrapper_class"]
    # format_exc_info turns ``log.exception(...)`` into the traceback text, so tests can read it.
    with structlog.testing.capture_logs(processors=[structlog.processors.format_exc_info]) as events:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
        try:
            if task_logs_use_stdlib():
                with _capture_stdlib_task_logs(events):
                    yield events
            else:
                yield events
        finally:
            structlog.configure(wrapper_class=saved)


def log_text(events: Sequence[Mapping[str, Any]], level: str | None = None) -> str:
    """The captured events as one searchable text (optionally only one level)."""
    return "\n".join(
        f"{event.get('log_level')} {event.get('event')} {event.get('exception', '')} {event}"
        for event in events
        if level is None or event.get("log_level") == level
    )


@dataclass
class FakeTaskInstance:
    """The little of a task instance our operators touch: XCom pushes and the reschedule record."""

    first_reschedule_date: datetime | None = None
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_reschedule_date


def make_context(ti: FakeTaskInstance | None = None) -> Any:
    """A minimal task context: just a task instance."""
    return {"ti": ti or FakeTaskInstance()}


def plain(value: Any) -> bool:
    """Whether ``value`` is built from JSON-like plain values only (no objects, no callables)."""
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and plain(item) for key, item in value.items())
    return False


_Trigger = TypeVar("_Trigger", bound=PortkeyPollTrigger)


def recreate_trigger(trigger: _Trigger) -> _Trigger:
    """What the triggerer does: serialize, store via serde, import the classpath, re-create."""
    classpath, kwargs = trigger.serialize()
    assert plain(kwargs), kwargs
    stored = serialize(kwargs)
    assert_no_secret(classpath, kwargs, stored, repr(trigger))
    restored = deserialize(stored)
    assert restored == kwargs
    recreated = import_string(classpath)(**restored)
    assert isinstance(recreated, type(trigger))
    assert recreated.serialize() == (classpath, kwargs)
    return recreated


async def first_event_payload(trigger: PortkeyPollTrigger) -> Any:
    """Run the trigger to its first event on the running loop, and check it yields no second one."""
    events = [event async for event in trigger.run()]
    assert len(events) == 1, events
    return events[0].payload


def run_trigger(trigger: PortkeyPollTrigger) -> Any:
    """The trigger's one event payload, on a fresh event loop (closing the loop's shared client)."""

    async def main() -> Any:
        try:
            return await first_event_payload(trigger)
        finally:
            await close_shared_client()

    return asyncio.run(main())


@dataclass
class Deferral:
    """What a deferrable sensor did: the trigger it deferred to, its event, and the outcome."""

    deferred: TaskDeferred
    trigger: PortkeyPollTrigger
    event: Any


def defer(sensor: Any, context: Any) -> TaskDeferred:
    """``execute`` a deferrable sensor and return the ``TaskDeferred`` it must raise."""
    with pytest.raises(TaskDeferred) as raised:
        sensor.execute(context)
    return raised.value


def run_deferred(sensor: Any, context: Any) -> tuple[Any, Deferral]:
    """
    Defer, run the re-created trigger to its event, resume: the result and what happened on the way.

    Raises whatever ``resume_execution`` raises, with the ``Deferral`` attached to the exception as
    its ``deferral`` attribute for the test to inspect.
    """
    resumed = copy.deepcopy(sensor)  # Airflow resumes on a new instance: no state survives in memory
    deferred = defer(sensor, context)
    assert deferred.method_name == "execute_complete"
    trigger = recreate_trigger(deferred.trigger)
    payload = run_trigger(trigger)
    assert plain(payload), payload
    event = deserialize(serialize(payload))
    deferral = Deferral(deferred, trigger, event)
    try:
        # As Airflow does: the kwargs the task deferred with, plus the event.
        next_kwargs = {**(deferred.kwargs or {}), "event": event}
        result = resumed.resume_execution(deferred.method_name, next_kwargs, context)
    except Exception as error:
        error.deferral = deferral  # type: ignore[attr-defined]
        raise
    return result, deferral


# -- the run-step sensor tests (poke and deferrable) ---------------------------------------------

#: The seeded steps that end unsuccessfully: (step id, status, parts of the error message).
UNSUCCESSFUL_STEPS = [
    ("step_fails", "failed", ["server_error", "Sorry, something went wrong."]),
    ("step_cancelled", "cancelled", []),
    ("step_expired", "expired", []),
]


def run_step_sensor(dag_id: str, step_id: str, options: dict[str, Any]) -> RunStepSensor:
    """A sensor on the seeded thread and run, inside a DAG as Airflow would build it."""
    with DAG(dag_id, schedule=None):
        return RunStepSensor(
            task_id="wait", thread_id=SEED_THREAD_ID, run_id=SEED_RUN_ID, step_id=step_id, **options
        )


def step_gets(emulator: EmulatorServer, step_id: str) -> int:
    """How many GETs of this step the emulator received."""
    return sum(1 for r in emulator.state.requests if r.path.endswith(f"/steps/{step_id}"))


def as_sent(emulator: EmulatorServer, step_id: str) -> dict[str, Any]:
    """The step as the emulator last sent it (a list render shows the latest retrieve, unchanged)."""
    steps = emulator.state.list_steps(SEED_THREAD_ID, SEED_RUN_ID)
    assert steps is not None
    return next(step for step in steps if step["id"] == step_id)


def stuck(emulator: EmulatorServer) -> str:
    """Seed a step that stays in_progress for good; returns its id."""
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_stuck", statuses=("in_progress",))
    return "step_stuck"


def slow_step_with_burst_after_first_wait(emulator: EmulatorServer, clock: FakeClock, status: int) -> str:
    """Seed a step in_progress for three looks, then completed; queue 8 ``status`` failures on it
    during the first wait. Returns its id."""
    emulator.state.add_step(
        SEED_THREAD_ID, SEED_RUN_ID, "step_slow", statuses=("in_progress",) * 3 + ("completed",)
    )
    clock.on_sleep(
        lambda n: (
            emulator.state.add_fault("status", path_contains="step_slow", status=status, times=8)
            if n == 1
            else None
        )
    )
    return "step_slow"
