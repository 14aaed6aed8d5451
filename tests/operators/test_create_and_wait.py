"""Create-and-wait (airflow_provider_portkey/durable.py) against the emulator: CreateRunOperator waiting
in poke and deferrable mode, cancel on timeout and kill (also from the trigger while deferred), and
re-attach on retry through a task state store, for runs and responses alike.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout
from airflow.sdk import DAG

from airflow_provider_portkey.emulator import ASST_DEMO, ASST_FAILS, ASST_SLOW, ASST_TOOLS, EmulatorServer
from airflow_provider_portkey.emulator.background import MODEL_COMPLETES
from airflow_provider_portkey.errors import PortkeyConfigurationError, RunUnsuccessfulError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import close_shared_client
from airflow_provider_portkey.operators.response import CreateResponseOperator
from airflow_provider_portkey.operators.run import CreateRunOperator
from airflow_provider_portkey.sensors.run import RunSensor
from airflow_provider_portkey.triggers.base import PortkeyPollTrigger
from airflow_provider_portkey.triggers.run import RunTrigger
from tests.sensors.support import FakeClock, FakeTaskInstance, defer, recreate_trigger, run_deferred

pytestmark = pytest.mark.usefixtures("portkey_conn")

MODES = ("poke", "deferrable")
CREATE_RUN = "/v1/threads/runs"


class StateStore:
    """Airflow 3.3's ``context["task_state_store"]`` as the operators use it: get and set by key."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        assert value is not None
        self.values[key] = value


def context(ti: FakeTaskInstance | None = None, store: StateStore | None = None) -> Any:
    found: dict[str, Any] = {"ti": ti or FakeTaskInstance()}
    if store is not None:
        found["task_state_store"] = store
    return found


def create_run(mode: str = "poke", **kwargs: Any) -> CreateRunOperator:
    options: dict[str, Any] = {
        "assistant_id": ASST_DEMO,
        "wait_for_completion": True,
        "poke_interval": 5,
        "timeout": 600,
        "deferrable": mode == "deferrable",
        **kwargs,
    }
    with DAG("create_and_wait_tests", schedule=None):
        return CreateRunOperator(task_id="agent", **options)


def run(operator: Any, mode: str, ctx: Any) -> Any:
    if mode == "poke" or not operator.wait_for_completion:
        return operator.execute(ctx)
    return run_deferred(operator, ctx)[0]


def posts(emulator: EmulatorServer, path: str) -> int:
    return sum(1 for r in emulator.state.requests if r.method == "POST" and r.path == path)


def run_status(thread_id: str, run_id: str) -> str:
    with PortkeyHook() as hook:
        return str(hook.get_run(thread_id, run_id).status)


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize("mode", MODES)
def test_waiting_returns_the_final_run_its_ids_and_usage_after_one_post(
    emulator: EmulatorServer, mode: str
) -> None:
    ti = FakeTaskInstance()
    result = run(create_run(mode), mode, context(ti))
    assert result["status"] == "completed"
    assert (ti.pushed["thread_id"], ti.pushed["run_id"]) == (result["thread_id"], result["id"])
    assert ti.pushed["usage"] == result["usage"]
    assert result["usage"]["total_tokens"] > 0
    assert posts(emulator, CREATE_RUN) == 1


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize("mode", MODES)
def test_waiting_stops_at_requires_action_unless_told_to_wait_through(mode: str) -> None:
    result = run(create_run(mode, assistant_id=ASST_TOOLS), mode, context())
    assert result["status"] == "requires_action"
    with pytest.raises(AirflowSensorTimeout, match="last status seen: requires_action"):
        run(
            create_run(mode, assistant_id=ASST_TOOLS, stop_on_requires_action=False, timeout=30),
            mode,
            context(),
        )


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize("mode", MODES)
def test_a_failed_run_fails_the_task_unless_its_status_is_not_listed(mode: str) -> None:
    with pytest.raises(RunUnsuccessfulError, match="is failed"):
        run(create_run(mode, assistant_id=ASST_FAILS), mode, context())
    assert run(create_run(mode, assistant_id=ASST_FAILS, fail_on_statuses=()), mode, context())["status"] == (
        "failed"
    )


def test_without_waiting_it_returns_the_new_run_as_before(emulator: EmulatorServer) -> None:
    ti = FakeTaskInstance()
    result = create_run(wait_for_completion=False).execute(context(ti))
    assert result["status"] == "queued"
    assert "usage" not in ti.pushed
    assert [r.method for r in emulator.state.requests] == ["POST"]


@pytest.mark.parametrize("mode", MODES)
def test_a_timeout_cancels_the_run_unless_told_not_to(
    emulator: EmulatorServer, clock: FakeClock, mode: str
) -> None:
    for cancel_on_kill, expected in ((True, "cancelled"), (False, "in_progress")):
        ti = FakeTaskInstance()
        operator = create_run(mode, assistant_id=ASST_SLOW, timeout=30, cancel_on_kill=cancel_on_kill)
        with pytest.raises(AirflowSensorTimeout, match="last status seen: in_progress"):
            run(operator, mode, context(ti))
        thread_id, run_id = ti.pushed["thread_id"], ti.pushed["run_id"]
        assert posts(emulator, f"/v1/threads/{thread_id}/runs/{run_id}/cancel") == int(cancel_on_kill)
        assert run_status(thread_id, run_id) in (expected, "cancelling" if cancel_on_kill else expected)


def test_on_kill_while_waiting_in_poke_mode_cancels_the_run(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    operator = create_run(assistant_id=ASST_SLOW, timeout=60)
    killed: list[str] = []

    def kill_once(poke: int) -> None:  # the worker's kill arrives while execute sleeps between pokes
        if not killed:
            operator.on_kill()
            killed.append(operator.run_id)

    clock.on_sleep(kill_once)
    with pytest.raises(RunUnsuccessfulError, match="cancel"):  # a real kill ends the process first
        operator.execute(context())
    assert posts(emulator, f"/v1/threads/{operator.thread_id}/runs/{killed[0]}/cancel") == 1


def test_reschedule_mode_is_refused_when_the_dag_is_parsed() -> None:
    with DAG("create_and_wait_tests", schedule=None):
        with pytest.raises(PortkeyConfigurationError, match="mode='reschedule' would start a new run"):
            CreateRunOperator(
                task_id="a", assistant_id=ASST_DEMO, wait_for_completion=True, mode="reschedule"
            )
        CreateRunOperator(task_id="b", assistant_id=ASST_DEMO, mode="reschedule")  # creating only: fine


@pytest.mark.parametrize("operator", [CreateRunOperator, CreateResponseOperator])
def test_starting_on_the_triggerer_is_refused_when_the_dag_is_parsed_on_every_airflow(
    operator: type[CreateRunOperator | CreateResponseOperator],
) -> None:
    arguments = {"assistant_id": ASST_DEMO} if operator is CreateRunOperator else {"body": {"model": "m"}}
    with pytest.raises(PortkeyConfigurationError, match=r"start_from_trigger=True .* no (run|response) is"):
        operator(task_id="a", deferrable=True, start_from_trigger=True, wait_for_completion=True, **arguments)


# -- re-attach on retry (Airflow 3.3's task state store) ----------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_retry_waits_on_the_run_its_earlier_try_started(
    emulator: EmulatorServer, clock: FakeClock, mode: str
) -> None:
    store = StateStore()
    first = create_run(mode, assistant_id=ASST_SLOW, timeout=30, cancel_on_kill=False)
    with pytest.raises(AirflowSensorTimeout):
        run(first, mode, context(store=store))
    started = store.values["portkey_run"]
    ti = FakeTaskInstance()
    with pytest.raises(AirflowSensorTimeout):
        run(create_run(mode, assistant_id=ASST_SLOW, timeout=30), mode, context(ti, store))
    assert posts(emulator, CREATE_RUN) == 1
    assert (ti.pushed["thread_id"], ti.pushed["run_id"]) == (started["thread_id"], started["run_id"])


@pytest.mark.usefixtures("clock")
def test_a_retry_returns_a_finished_run_as_it_ended_unless_rerun_finished(emulator: EmulatorServer) -> None:
    store = StateStore()
    done = create_run(fail_on_statuses=()).execute(context(store=store))
    again = create_run(fail_on_statuses=()).execute(context(store=store))
    assert again == {**done, **again}
    assert again["id"] == done["id"]
    assert again["status"] == "completed"
    assert posts(emulator, CREATE_RUN) == 1
    fresh = create_run(rerun_finished=True).execute(context(store=store))
    assert fresh["id"] != done["id"]
    assert store.values["portkey_run"]["run_id"] == fresh["id"]
    assert posts(emulator, CREATE_RUN) == 2


@pytest.mark.usefixtures("clock")
def test_a_response_retry_re_attaches_through_the_same_mechanism(emulator: EmulatorServer) -> None:
    store = StateStore()
    with DAG("create_and_wait_tests", schedule=None):
        ask = CreateResponseOperator(
            task_id="ask", body={"model": MODEL_COMPLETES, "input": "2+2?"}, wait_for_completion=True
        )
    first = ask.execute(context(store=store))
    second = ask.execute(context(store=store))
    assert second["id"] == first["id"]
    assert sum(1 for r in emulator.state.requests if r.method == "POST") == 1


# -- cancel while deferred (the trigger) ---------------------------------------------------------------


def _cancelled_while_polling(trigger: PortkeyPollTrigger, emulator: EmulatorServer) -> None:
    """Run the trigger until it has polled once, then cancel it as a triggerer does."""

    async def main() -> None:
        before = emulator.state.request_count
        task = asyncio.ensure_future(anext(aiter(trigger.run())))
        try:
            while not task.done() and emulator.state.request_count == before:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # the emulator runs in another thread: no event to await
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await close_shared_client()

    asyncio.run(main())


def _slow_run_trigger(emulator: EmulatorServer, **kwargs: Any) -> tuple[RunTrigger, str]:
    with PortkeyHook() as hook:
        started = hook.create_thread_and_run(ASST_SLOW)
    trigger = RunTrigger(
        thread_id=started.thread_id, run_id=started.id, deadline=time.time() + 600, poll_interval=5, **kwargs
    )
    return trigger, f"/v1/threads/{started.thread_id}/runs/{started.id}/cancel"


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_on_kill_cancels_the_run_and_a_plain_cancellation_does_not(
    emulator: EmulatorServer, cancel_on_kill: bool
) -> None:
    trigger, cancel_path = _slow_run_trigger(emulator, cancel_on_kill=cancel_on_kill)
    _cancelled_while_polling(trigger, emulator)  # a triggerer stopping or handing the trigger over
    assert posts(emulator, cancel_path) == 0

    async def user_action() -> None:  # the triggerer calls on_kill only on a person's action
        try:
            await trigger.on_kill()
        finally:
            await close_shared_client()

    asyncio.run(user_action())
    assert posts(emulator, cancel_path) == int(cancel_on_kill)


def test_a_sensors_trigger_never_cancels_the_run_it_did_not_start(emulator: EmulatorServer) -> None:
    with PortkeyHook() as hook:
        started = hook.create_thread_and_run(ASST_SLOW)
    with DAG("create_and_wait_tests", schedule=None):
        sensor = RunSensor(task_id="wait", thread_id=started.thread_id, run_id=started.id, deferrable=True)
    trigger = recreate_trigger(defer(sensor, context()).trigger)
    assert isinstance(trigger, RunTrigger)
    assert not trigger.cancel_on_kill
