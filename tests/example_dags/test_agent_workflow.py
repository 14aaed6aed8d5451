"""The agent-workflow example DAG end to end: ``airflow dags test`` against the emulator.

One scenario per path through the DAG, each an ``airflow dags test`` subprocess with its own
database copy and emulator (the harness in ``tests.example_dags.airflow_cli``), run in parallel
once per module; the tests assert on what Airflow recorded and what the emulator received.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_provider_portkey.emulator import ASST_DEMO, ASST_FAILS, ASST_TOOLS, EmulatorServer
from airflow_provider_portkey.tracing import PortkeyLogsLink
from tests.example_dags.agent_workflow import DAG_ID, TOOL_PATH_STATES, computed_tool_output
from tests.example_dags.airflow_cli import DagRunResult, run_dag, without_mask_secret_requests
from tests.support.secrets import API_KEY, VIRTUAL_KEY, assert_no_secret

pytestmark = pytest.mark.e2e

RUN_TRIGGER = "airflow_provider_portkey.triggers.run.RunTrigger"
SCENARIOS = {"tools": ASST_TOOLS, "direct": ASST_DEMO, "fails": ASST_FAILS}
LINK_KEY = PortkeyLogsLink().xcom_key


@dataclass
class Outcome:
    run: DagRunResult
    emulator: EmulatorServer

    def api_requests(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.emulator.state.requests]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, airflow_template_db: Path) -> dict[str, Outcome]:
    workdir = tmp_path_factory.mktemp("agent-workflow")
    emulators = {name: EmulatorServer(mode="portkey") for name in SCENARIOS}
    for emulator in emulators.values():
        emulator.start()

    def run(name: str) -> DagRunResult:
        connection = {
            "conn_type": "portkey",
            "host": emulators[name].url,
            "password": API_KEY,
            "extra": {"virtual_key": VIRTUAL_KEY, "max_retry_wait": 2},
        }
        return run_dag(
            airflow_template_db,
            workdir / name,
            DAG_ID,
            connection=connection,
            conf={"assistant_id": SCENARIOS[name]},
        )

    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            results = dict(zip(SCENARIOS, pool.map(run, SCENARIOS), strict=True))
    finally:
        for emulator in emulators.values():
            emulator.stop()
    return {name: Outcome(results[name], emulators[name]) for name in SCENARIOS}


def test_a_run_asking_for_a_tool_gets_its_output_and_completes(outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes["tools"]
    run = outcome.run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states() == TOOL_PATH_STATES
    assert run.xcom("wait_for_run")["status"] == "requires_action"
    _call, output = computed_tool_output(run)
    assert run.xcom("wait_after_tools")["status"] == "completed"
    steps = run.xcom("list_steps")
    assert [step["type"] for step in steps] == ["tool_calls", "message_creation"]
    assert steps[0]["step_details"]["tool_calls"][0]["function"]["output"] == output
    assert run.xcom("get_step", map_index=1)["id"] == steps[1]["id"]
    assert sorted(run.xcom("report_answer")) == sorted(step["id"] for step in steps)
    assert outcome.emulator.state.runs_created == 1


def test_a_run_without_tool_calls_skips_the_tool_path(outcomes: dict[str, Outcome]) -> None:
    run = outcomes["direct"].run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    states = run.states()
    assert states["no_tool_calls"] == "success"
    for skipped in ("compute_tool_outputs", "submit_tool_outputs", "wait_after_tools", "report_failure"):
        assert states[skipped] == "skipped", skipped
    assert states["report_answer"] == "success"
    assert [s["type"] for s in run.xcom("list_steps")] == ["message_creation"]


def test_a_failed_run_takes_the_failure_branch_with_its_error(outcomes: dict[str, Outcome]) -> None:
    run = outcomes["fails"].run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states()["report_answer"] == "skipped"
    report = run.xcom("report_failure")
    assert report["status"] == "failed"
    assert report["last_error"]["code"] == "server_error"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_sensors_defer_and_their_triggers_share_the_tasks_trace(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    run = outcomes[scenario].run
    assert "wait_for_run" in run.deferred_tasks, run.describe()
    for trigger in (t for t in run.triggers if t.classpath == RUN_TRIGGER):
        assert trigger.kwargs["trace_id"].startswith(f"airflow/{DAG_ID}/")
        assert trigger.kwargs["metadata"]["dag_id"] == DAG_ID
        task_id = trigger.kwargs["metadata"]["task_id"]
        assert trigger.kwargs["trace_id"].endswith(f"/{task_id}/try-1")
        sent = {
            r.headers.get("x-portkey-trace-id")
            for r in outcomes[scenario].emulator.state.requests
            if json.loads(r.headers.get("x-portkey-metadata", "{}")).get("task_id") == task_id
        }
        assert sent == {trigger.kwargs["trace_id"]}  # the task's poke and the trigger's polls alike


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_portkey_task_has_its_logs_link_and_nothing_leaks(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    run = outcomes[scenario].run
    for task_id in ("start_run", "wait_for_run", "list_steps"):
        link = run.xcom(task_id, LINK_KEY)
        assert link.startswith(f"https://app.portkey.ai/logs?trace_id=airflow%2F{DAG_ID}%2F"), link
    assert_no_secret(
        without_mask_secret_requests(run.output), run.xcoms, [trigger.kwargs for trigger in run.triggers]
    )
    assert run.python_warnings() == []
