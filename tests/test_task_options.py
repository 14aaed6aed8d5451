"""What every Portkey operator and sensor takes the way Airflow's own providers do.

The default connection id is the hook's; ``deferrable`` defaults to ``[operators]
default_deferrable`` in the signature; ``hook_params`` reach the hook in every mode (the trigger's
too) and a bad one fails when the DAG is parsed; ``hook`` is the task's hook.
"""

from __future__ import annotations

import ast
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

import airflow_provider_portkey
from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_THREAD_ID, STEP_INSTANT, EmulatorServer
from airflow_provider_portkey.errors import PortkeyConfigurationError
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.operators.response import CreateResponseOperator, GetResponseOperator
from airflow_provider_portkey.operators.run import (
    CreateRunOperator,
    ListRunStepsOperator,
    SubmitToolOutputsOperator,
)
from airflow_provider_portkey.operators.run_step import GetRunStepOperator
from airflow_provider_portkey.sensors.response import ResponseSensor
from airflow_provider_portkey.sensors.run import RunSensor
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from airflow_provider_portkey.settings import HOOK_PARAMS
from airflow_provider_portkey.triggers.run_step import RunStepTrigger
from tests.sensors.support import FakeClock, clock, defer, make_context, run_step_sensor, run_trigger
from tests.support.airflow_compat import conf

IDS: dict[str, Any] = {"thread_id": SEED_THREAD_ID, "run_id": SEED_RUN_ID}
#: Each task class with the arguments it needs besides the common ones.
TASKS: dict[type[Any], dict[str, Any]] = {
    GetRunStepOperator: {**IDS, "step_id": STEP_INSTANT},
    CreateRunOperator: {"assistant_id": "asst_demo"},
    ListRunStepsOperator: IDS,
    SubmitToolOutputsOperator: {**IDS, "tool_outputs": {"call_x": "42"}},
    RunStepSensor: {**IDS, "step_id": STEP_INSTANT},
    RunSensor: IDS,
    GetResponseOperator: {"response_id": "resp_x"},
    CreateResponseOperator: {"body": {"model": "m", "input": "x"}},
    ResponseSensor: {"response_id": "resp_x"},
}
__all__ = ["clock"]  # the fixture

DEFERRABLE_DEFAULT = "conf.getboolean('operators', 'default_deferrable', fallback=False)"


def build(cls: type[Any], **kwargs: Any) -> Any:
    with DAG("task_options", schedule=None):
        return cls(task_id="task", **TASKS[cls], **kwargs)


@pytest.mark.parametrize("cls", TASKS, ids=lambda cls: cls.__name__)
def test_the_default_connection_is_the_hooks(cls: type[Any]) -> None:
    assert build(cls).portkey_conn_id == PortkeyHook.default_conn_name == "portkey_default"


def test_every_deferrable_argument_defaults_to_airflows_switch_in_the_signature() -> None:
    """Airflow's check for its providers, over our source: the default is the config lookup itself."""
    found = 0
    root = Path(airflow_provider_portkey.__file__).parent
    for module in pkgutil.walk_packages([str(root)], "airflow_provider_portkey."):
        path = root.joinpath(*module.name.split(".")[1:])
        source = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            # Defaults line up with the last positional arguments, and one to one with keyword-only ones.
            positional = node.args.args[len(node.args.args) - len(node.args.defaults) :]
            pairs = [
                *zip(positional, node.args.defaults, strict=True),
                *zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True),
            ]
            for argument, default in pairs:
                if argument.arg == "deferrable":
                    found += 1
                    assert default is not None, module.name
                    assert ast.unparse(default) == DEFERRABLE_DEFAULT, module.name
    assert found >= 1


@pytest.mark.parametrize("switch", [True, False])
def test_deferrable_follows_the_switch_as_the_module_read_it(switch: bool) -> None:
    from airflow_provider_portkey.sensors.base import PortkeyPollSensor

    signature = inspect.signature(PortkeyPollSensor.__init__)
    assert signature.parameters["deferrable"].default is conf.getboolean(
        "operators", "default_deferrable", fallback=False
    )
    assert build(RunStepSensor, deferrable=switch).deferrable is switch


@pytest.mark.parametrize("cls", TASKS, ids=lambda cls: cls.__name__)
def test_hook_params_reach_the_tasks_hook(cls: type[Any]) -> None:
    task = build(cls, hook_params={"max_retries": 0, "max_retry_wait": 1.5}, portkey_conn_id="other")

    assert task.hook is task.hook  # made once
    assert isinstance(task.hook, PortkeyHook)
    assert task.hook.portkey_conn_id == "other"
    assert task.hook._overrides == {"max_retries": 0, "max_retry_wait": 1.5}
    assert build(cls).hook._overrides == {}


@pytest.mark.parametrize(
    ("hook_params", "message"),
    [
        ({"max_retrys": 1}, "hook_params has unknown option(s) 'max_retrys'; allowed: max_retries"),
        ({"trace_id": "t"}, "unknown option(s) 'trace_id'"),
        ({"max_retries": -1}, "hook_params.max_retries must be a whole number >= 0, got -1"),
        ({"max_retries": "3"}, "hook_params.max_retries must be a whole number >= 0, got '3'"),
        ({"max_retry_wait": float("inf")}, "hook_params.max_retry_wait must be a number of seconds >= 0"),
        ([("max_retries", 1)], "hook_params must be a dict, got [('max_retries', 1)]"),
    ],
)
@pytest.mark.parametrize("cls", [GetRunStepOperator, RunStepSensor], ids=lambda cls: cls.__name__)
def test_a_bad_hook_params_fails_when_the_dag_is_parsed(
    cls: type[Any], hook_params: Any, message: str
) -> None:
    with pytest.raises(PortkeyConfigurationError) as raised:
        build(cls, hook_params=hook_params)
    assert message in str(raised.value)


@pytest.mark.usefixtures("portkey_conn")
def test_execute_uses_the_hook_property_traced_to_the_try(emulator: EmulatorServer) -> None:
    task = build(GetRunStepOperator, trace_id="trace-1", hook_params={"max_retries": 0})
    before = task.hook  # made before the try: without its trace

    task.execute(make_context())

    assert task.hook is not before
    assert (task.hook.trace_id, task.hook._overrides) == ("trace-1", {"max_retries": 0})
    assert emulator.state.requests[-1].headers["x-portkey-trace-id"] == "trace-1"


@pytest.mark.usefixtures("portkey_conn")
def test_a_deferred_sensor_hands_its_hook_params_to_the_trigger(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    emulator.state.add_step(SEED_THREAD_ID, SEED_RUN_ID, "step_slow", statuses=("in_progress", "completed"))
    params = {"max_retries": 0, "max_retry_wait": 0.5}
    assert set(params) == set(HOOK_PARAMS)  # every option the hook takes from a task
    sensor = run_step_sensor("hook_params_dag", "step_slow", {"deferrable": True, "hook_params": params})

    _, kwargs = defer(sensor, make_context()).trigger.serialize()

    assert {name: kwargs[name] for name in HOOK_PARAMS} == params


@pytest.mark.usefixtures("portkey_conn")
@pytest.mark.parametrize("max_retries", [0, None])
def test_the_triggers_hook_retries_as_the_tasks_does(
    emulator: EmulatorServer, clock: FakeClock, no_jitter: None, max_retries: int | None
) -> None:
    """With ``max_retries=0`` a 503 is waited out by the poll interval, else retried in the hook."""
    emulator.state.add_fault("status", path_contains=STEP_INSTANT, status=503)
    trigger = RunStepTrigger(
        **IDS, step_id=STEP_INSTANT, deadline=clock.now + 60, poll_interval=5, max_retries=max_retries
    )

    assert run_trigger(trigger)["status"] == "success"
    (waited,) = clock.sleeps  # one wait between the 503 and the answer
    if max_retries == 0:
        assert waited == 5.0  # not retried: the next poll, one poll interval later
    else:
        assert 0 < waited <= 2.0  # retried by the hook, within the connection's max_retry_wait
