"""DAG parsing loads only the operator and sensor classes, never what runs a task.

A DAG file that uses this provider imports the sensor and operator modules and builds tasks; that
must not load the pydantic models, the request-building core, the hooks, the triggers
(``airflow.triggers.base``) or the HTTP clients: they cost tens of milliseconds per parse and are
imported at execute time instead. Checked by what a fresh interpreter has in ``sys.modules``, not by
timing (docs/benchmarks.md measures the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: A DAG file as a parse sees it: Airflow's SDK is already imported, then ours, then the tasks. Before
#: ours, it builds a plain sensor and operator, so what Airflow itself loads on building any task
#: (Airflow 3.0 loads httpx and airflow.triggers.base there) is not counted as ours.
_DAG_FILE = """
import json, sys
import airflow.sdk
from airflow.sdk import DAG, BaseOperator, BaseSensorOperator

class PlainSensor(BaseSensorOperator):
    def poke(self, context): return True

with DAG("plain", schedule=None):
    PlainSensor(task_id="plain_sensor") >> BaseOperator(task_id="plain_operator")

phases = {"start": sorted(sys.modules)}
from airflow_provider_portkey.operators.run import (
    CreateRunOperator, ListRunStepsOperator, SubmitToolOutputsOperator,
)
from airflow_provider_portkey.operators.response import CreateResponseOperator, GetResponseOperator
from airflow_provider_portkey.operators.run_step import GetRunStepOperator
from airflow_provider_portkey.sensors.response import ResponseSensor
from airflow_provider_portkey.sensors.run import RunSensor
from airflow_provider_portkey.sensors.run_step import RunStepSensor
phases["imported"] = sorted(sys.modules)

with DAG("import_cost", schedule=None):
    ids = {"thread_id": "thread_x", "run_id": "run_x"}
    RunStepSensor(task_id="wait_step", step_id="step_x", fail_on_statuses=["failed"], **ids)
    RunStepSensor(task_id="wait_step_deferred", step_id="step_x", deferrable=True, **ids)
    RunSensor(task_id="wait_run", fail_on_statuses=("failed", "incomplete"), **ids)
    GetRunStepOperator(task_id="get_step", step_id="step_x", include=["x"], **ids)
    CreateRunOperator(task_id="start", assistant_id="asst_x")
    ListRunStepsOperator(task_id="list", statuses="completed", step_types="tool_calls", limit=2, **ids)
    SubmitToolOutputsOperator(task_id="answer", tool_outputs={"call_x": "42"}, **ids)
    ResponseSensor(task_id="wait_response", response_id="resp_x", deferrable=True)
    CreateResponseOperator(task_id="ask", body={"model": "m", "input": "x"}, wait_for_completion=True)
    GetResponseOperator(task_id="look", response_id="resp_x")
phases["built"] = sorted(sys.modules)

print(json.dumps(phases))
"""

#: Loaded only when a task runs: (module name, why it must not load at parse time).
_EXECUTE_TIME_ONLY = {
    "airflow_provider_portkey.models": "pydantic models",
    "airflow_provider_portkey.protocol": "request building and response parsing",
    "airflow_provider_portkey.models_response": "pydantic models",
    "airflow_provider_portkey.responses_api": "request building and response parsing",
    "airflow_provider_portkey.hooks": "the hooks",
    "airflow_provider_portkey.triggers": "our triggers",
    "airflow.triggers.base": "Airflow's trigger base",
    "pydantic": "pydantic",
    "httpx": "the async HTTP client",
    "httpcore": "the async HTTP client",
    "requests": "the sync HTTP client",
    "urllib3": "the sync HTTP client",
}


def _fresh_python(code: str, tmp_path: Path) -> dict[str, list[str]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home")
    done = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(f"{prefix}.")


@pytest.fixture(scope="module")
def phases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return _fresh_python(_DAG_FILE, tmp_path_factory.mktemp("import-cost"))


def _execute_time_modules(loaded: set[str]) -> dict[str, list[str]]:
    found = {
        f"{prefix} ({why})": sorted(module for module in loaded if _matches(module, prefix))
        for prefix, why in _EXECUTE_TIME_ONLY.items()
    }
    return {name: modules for name, modules in found.items() if modules}


@pytest.mark.parametrize(
    ("since", "until"),
    [("start", "imported"), ("imported", "built")],
    ids=["importing the modules", "building the tasks"],
)
def test_dag_parsing_loads_no_execute_time_module(
    phases: dict[str, list[str]], since: str, until: str
) -> None:
    # Only what this step loaded counts: what airflow.sdk already loaded (httpx and pydantic, on
    # current Airflow) costs the parse nothing more.
    loaded = set(phases[until]) - set(phases[since])
    assert _execute_time_modules(loaded) == {}


def test_the_check_sees_our_modules(phases: dict[str, list[str]]) -> None:
    """The import did happen in the measured step, and the check would catch a model import."""
    imported = set(phases["imported"]) - set(phases["start"])
    assert {"airflow_provider_portkey.sensors.run_step", "airflow_provider_portkey.statuses"} <= imported
    assert _execute_time_modules({"airflow_provider_portkey.models"}) != {}


def test_status_module_needs_nothing_but_the_standard_library(tmp_path: Path) -> None:
    """What sensors and operators validate against at parse time is importable on its own."""
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_portkey.statuses\n"
        "print(json.dumps({'before': sorted(before), 'after': sorted(sys.modules)}))\n"
    )
    modules = _fresh_python(code, tmp_path)
    new = set(modules["after"]) - set(modules["before"])
    packages = {module.split(".")[0] for module in new}
    assert packages - {"airflow_provider_portkey"} <= set(sys.stdlib_module_names), sorted(new)
