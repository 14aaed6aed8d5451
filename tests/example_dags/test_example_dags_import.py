"""The example DAGs parse cleanly in a DagBag and keep the promises issue 4 makes about them."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.definitions.mappedoperator import MappedOperator

from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_STEP_IDS, SEED_THREAD_ID
from airflow_provider_portkey.sensors.run_step import RunStepSensor
from airflow_provider_portkey.tracing import PortkeyTaskMixin
from tests.example_dags.airflow_cli import DAGS_FOLDER, in_virtualenv
from tests.support.airflow_compat import AIRFLOW_VERSION, DagBag, dag_bag

#: The DAGs that wait on seeded run steps (ids from params), and the one that drives a whole run.
STEP_DAG_IDS = {"portkey_wait_and_branch", "portkey_inspect_step", "portkey_mapped_steps"}
#: The DAGs on background responses (the Responses API).
RESPONSE_DAG_IDS = {"portkey_background_response", "portkey_response_chain"}
#: The human-approval DAG parses only where Airflow has human-in-the-loop operators (3.1+).
APPROVAL_DAG_ID = "portkey_approve_tool_calls"
HAS_HITL = AIRFLOW_VERSION.release >= (3, 1)
EXAMPLE_DAG_IDS = {*STEP_DAG_IDS, "portkey_agent_workflow", *RESPONSE_DAG_IDS, *[APPROVAL_DAG_ID] * HAS_HITL}


def _dagbag() -> DagBag:
    return dag_bag(DAGS_FOLDER, safe_mode=False)


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return _dagbag()


def _portkey_tasks(dagbag: DagBag) -> list[Any]:
    return [
        task
        for dag in dagbag.dags.values()
        for task in dag.tasks
        if isinstance(task, PortkeyTaskMixin)
        or (
            isinstance(getattr(task, "operator_class", None), type)
            and issubclass(task.operator_class, PortkeyTaskMixin)
        )
    ]


def test_example_dags_import_without_errors_or_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dagbag = _dagbag()
    if HAS_HITL:
        assert dagbag.import_errors == {}
    else:  # Airflow 3.0: the approval DAG fails at parse time, saying what it needs
        [(path, error)] = dagbag.import_errors.items()
        assert path.endswith(f"{APPROVAL_DAG_ID}.py")
        assert "ApproveToolCallsOperator needs Airflow >= 3.1 with apache-airflow-providers-standard" in error
    assert dagbag.captured_warnings == {}
    ours = [w for w in caught if str(DAGS_FOLDER.parent) in w.filename and not in_virtualenv(w.filename)]
    assert ours == [], [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
    assert set(dagbag.dag_ids) == EXAMPLE_DAG_IDS


def test_every_example_dag_says_what_it_shows(dagbag: DagBag) -> None:
    for dag in dagbag.dags.values():
        assert dag.doc_md, dag.dag_id
        assert dag.description, dag.dag_id
        assert "portkey_default" in dag.doc_md, dag.dag_id


def test_every_portkey_task_uses_the_default_connection(dagbag: DagBag) -> None:
    tasks = _portkey_tasks(dagbag)
    # One per step DAG (a mapped task counts once), six in the agent workflow, two per response DAG,
    # four in the approval DAG (Airflow 3.1+).
    assert len(tasks) == 3 + 6 + 2 + 2 + 4 * HAS_HITL
    for task in tasks:
        # A mapped operator keeps its constructor arguments in partial_kwargs until it expands.
        kwargs = getattr(task, "partial_kwargs", None) or vars(task)
        assert kwargs["portkey_conn_id"] == "portkey_default", task.task_id


def test_param_defaults_are_ids_the_emulator_knows(dagbag: DagBag) -> None:
    for dag in (dagbag.dags[dag_id] for dag_id in STEP_DAG_IDS):
        params = dag.params.dump()
        assert params["thread_id"] == SEED_THREAD_ID
        assert params["run_id"] == SEED_RUN_ID
        step_ids = params.get("step_ids") or [params["step_id"]]
        assert set(step_ids) <= set(SEED_STEP_IDS), dag.dag_id


def _branch_sensor(dagbag: DagBag) -> RunStepSensor:
    sensor = dagbag.dags["portkey_wait_and_branch"].get_task("wait_for_step")
    assert isinstance(sensor, RunStepSensor)
    return sensor


def test_wait_and_branch_polls_by_default(dagbag: DagBag) -> None:
    sensor = _branch_sensor(dagbag)
    assert sensor.deferrable is False
    assert sensor.fail_on_statuses == ()


@pytest.mark.parametrize("switch", ["True", "False"])
def test_wait_and_branch_follows_airflows_default_deferrable(tmp_path: Path, switch: str) -> None:
    """Read, as in Airflow's providers, when the provider module loads: a fresh DAG processor's parse."""
    code = (
        "from tests.support.airflow_compat import dag_bag\n"
        f"bag = dag_bag({str(DAGS_FOLDER)!r}, safe_mode=False)\n"
        "print(bag.dags['portkey_wait_and_branch'].get_task('wait_for_step').deferrable)\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=switch)
    done = subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", code],
        env=env,
        cwd=DAGS_FOLDER.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == switch


def test_mapped_steps_maps_deferrable_sensors_over_the_upstream_ids(dagbag: DagBag) -> None:
    dag = dagbag.dags["portkey_mapped_steps"]
    mapped = dag.get_task("wait_for_step")
    assert isinstance(mapped, MappedOperator)
    assert mapped.operator_class is RunStepSensor
    assert mapped.partial_kwargs["deferrable"] is True
    expanded = getattr(mapped.expand_input, "value", None)  # .expand(name=...) keeps a dict
    assert isinstance(expanded, dict)
    assert set(expanded) == {"step_id"}
    assert dag.get_task("choose_steps") in mapped.upstream_list
