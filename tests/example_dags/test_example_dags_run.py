"""The example DAGs run end to end under Airflow: ``airflow dags test`` against the emulator.

Each scenario is one ``airflow dags test`` subprocess with its own copy of a migrated SQLite
database and its own freshly seeded emulator (so poll-advanced steps start over), with the
connection in ``AIRFLOW_CONN_PORTKEY_DEFAULT``. The scenarios the selected tests need run in
parallel, once per module; the tests then assert on what the database recorded (task states,
XComs, triggers) and on what the emulator received.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_portkey.emulator import (
    SEED_RUN_ID,
    SEED_THREAD_ID,
    STEP_COMPLETES,
    STEP_FAILS,
    STEP_MAP_IDS,
    STEP_TOOL_CALLS,
    EmulatorServer,
    EmulatorState,
)
from tests.example_dags.airflow_cli import (
    DAG_RUN_TIMINGS,
    DagRunResult,
    run_dag,
    without_mask_secret_requests,
)
from tests.example_dags.background_response import ANSWERED_STATES
from tests.example_dags.background_response import DAG_ID as BACKGROUND_DAG_ID
from tests.support.secrets import API_KEY, VIRTUAL_KEY, assert_no_secret

pytestmark = pytest.mark.e2e

WAIT_AND_BRANCH = "portkey_wait_and_branch"
INSPECT = "portkey_inspect_step"
MAPPED = "portkey_mapped_steps"
TRIGGER = "airflow_provider_portkey.triggers.run_step.RunStepTrigger"
CHAIN = "portkey_response_chain"
RESPONSE_TRIGGER = "airflow_provider_portkey.triggers.response.ResponseTrigger"
ALREADY_FAILED = "step_already_failed"
RATE_LIMITED_ERROR = {"code": "rate_limit_exceeded", "message": "You exceeded your current quota."}


def _add_failed_step(state: EmulatorState) -> None:
    state.add_step(
        SEED_THREAD_ID, SEED_RUN_ID, ALREADY_FAILED, statuses=("failed",), last_error=RATE_LIMITED_ERROR
    )


@dataclass(frozen=True)
class Scenario:
    dag_id: str
    conf: dict[str, Any] | None = None
    deferrable: bool = False
    setup: Callable[[EmulatorState], None] | None = None


SCENARIOS: dict[str, Scenario] = {
    "branch-poke-completes": Scenario(WAIT_AND_BRANCH),  # the params' defaults: step_completes
    "branch-poke-fails": Scenario(WAIT_AND_BRANCH, {"step_id": STEP_FAILS}),
    "branch-deferrable-completes": Scenario(WAIT_AND_BRANCH, deferrable=True),
    "branch-deferrable-fails": Scenario(WAIT_AND_BRANCH, {"step_id": STEP_FAILS}, deferrable=True),
    "branch-poke-tool-calls": Scenario(WAIT_AND_BRANCH, {"step_id": STEP_TOOL_CALLS}),
    "inspect-completed": Scenario(INSPECT),  # the params' defaults: step_instant
    "inspect-failed": Scenario(INSPECT, {"step_id": ALREADY_FAILED}, setup=_add_failed_step),
    "mapped-all-complete": Scenario(MAPPED),  # the params' defaults: step_map_1..3
    "mapped-one-cancelled": Scenario(MAPPED, {"step_ids": ["step_map_1", "step_cancelled"]}),
    "response-completes": Scenario(BACKGROUND_DAG_ID),  # the params' defaults: emulator-completes
    "response-fails": Scenario(BACKGROUND_DAG_ID, {"model": "emulator-fails"}),
    "response-incomplete": Scenario(BACKGROUND_DAG_ID, {"model": "emulator-incomplete"}),
    "response-chain": Scenario(CHAIN),
}


@dataclass
class Outcome:
    """A finished scenario: the DAG run as Airflow recorded it, and the emulator it talked to."""

    run: DagRunResult
    emulator: EmulatorServer

    def step_gets(self, step_id: str) -> int:
        """How many times the emulator was asked for ``step_id``."""
        suffix = f"/steps/{step_id}"
        return sum(1 for r in self.emulator.state.requests if r.method == "GET" and r.path.endswith(suffix))

    def step_json(self, step_id: str) -> dict[str, Any]:
        """The step as the emulator renders it now (listing does not advance it)."""
        steps = self.emulator.state.list_steps(SEED_THREAD_ID, SEED_RUN_ID) or []
        return next(step for step in steps if step["id"] == step_id)


def _connection(emulator: EmulatorServer) -> dict[str, Any]:
    return {
        "conn_type": "portkey",
        "host": emulator.url,
        "password": API_KEY,
        "extra": {"virtual_key": VIRTUAL_KEY, "max_retry_wait": 2},
    }


def _wanted_scenarios(request: pytest.FixtureRequest) -> list[str]:
    """The scenarios of the tests selected in this module (so ``-k`` runs only what it needs)."""
    wanted = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        same_module = isinstance(item, pytest.Function) and item.module is request.module
        if same_module and callspec is not None and "scenario" in callspec.params:
            wanted.add(callspec.params["scenario"])
    return sorted(wanted)


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, airflow_template_db: Path
) -> dict[str, Outcome]:
    """Run every wanted scenario, in parallel (each run is mostly Airflow start-up and waiting)."""
    names = _wanted_scenarios(request)
    workdir = tmp_path_factory.mktemp("dag-runs")
    emulators = {name: EmulatorServer(mode="portkey") for name in names}
    for name in names:
        emulators[name].start()
        setup = SCENARIOS[name].setup
        if setup is not None:
            setup(emulators[name].state)

    def run(name: str) -> DagRunResult:
        scenario = SCENARIOS[name]
        return run_dag(
            airflow_template_db,
            workdir / name,
            scenario.dag_id,
            connection=_connection(emulators[name]),
            conf=scenario.conf,
            deferrable=scenario.deferrable,
        )

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            results = dict(zip(names, pool.map(run, names), strict=True))
    finally:
        for emulator in emulators.values():
            emulator.stop()
    timings = ", ".join(f"{name} {result.seconds:.1f} s" for name, result in results.items())
    request.config.stash.setdefault(DAG_RUN_TIMINGS, []).append(
        f"{len(names)} example DAG runs in {time.monotonic() - started:.1f} s wall ({timings})"
    )
    return {name: Outcome(results[name], emulators[name]) for name in names}


def _parametrize(*names: str) -> pytest.MarkDecorator:
    unknown = set(names) - set(SCENARIOS)
    assert not unknown, unknown
    return pytest.mark.parametrize("scenario", names)


# -- DAG 1: wait and branch ---------------------------------------------------------------------------


@_parametrize("branch-poke-completes", "branch-deferrable-completes")
def test_completed_step_takes_the_success_branch_and_reports_its_message(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    outcome = outcomes[scenario]
    run = outcome.run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states() == {
        "wait_for_step": "success",
        "branch_on_status": "success",
        "report_output": "success",
        "report_failure": "skipped",
    }
    step = outcome.step_json(STEP_COMPLETES)
    assert run.xcom("wait_for_step") == step  # the step JSON exactly as the API sent it
    assert run.xcom("branch_on_status", "skipmixin_key") == {"followed": ["report_output"]}
    message_id = step["step_details"]["message_creation"]["message_id"]
    assert run.xcom("report_output") == {
        "step_id": STEP_COMPLETES,
        "status": "completed",
        "message_id": message_id,
    }
    assert outcome.step_gets(STEP_COMPLETES) == 3  # in_progress, in_progress, completed


@_parametrize("branch-poke-fails", "branch-deferrable-fails")
def test_failed_step_takes_the_failure_branch_and_reports_last_error(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    outcome = outcomes[scenario]
    run = outcome.run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states() == {
        "wait_for_step": "success",  # fail_on_statuses=(): the branch decides, not the sensor
        "branch_on_status": "success",
        "report_output": "skipped",
        "report_failure": "success",
    }
    assert run.xcom("wait_for_step") == outcome.step_json(STEP_FAILS)
    assert run.xcom("branch_on_status", "skipmixin_key") == {"followed": ["report_failure"]}
    assert run.xcom("report_failure") == {
        "step_id": STEP_FAILS,
        "status": "failed",
        "code": "server_error",
        "message": "Sorry, something went wrong.",
    }


@_parametrize("branch-deferrable-completes", "branch-deferrable-fails")
def test_deferrable_sensor_hands_the_wait_to_the_trigger(outcomes: dict[str, Outcome], scenario: str) -> None:
    run = outcomes[scenario].run
    assert run.deferred_tasks == ["wait_for_step"], run.describe()
    [trigger] = run.triggers
    assert trigger.classpath == TRIGGER
    expected_step = SCENARIOS[scenario].conf or {"step_id": STEP_COMPLETES}
    assert trigger.kwargs["step_id"] == expected_step["step_id"]
    assert trigger.kwargs["fail_on_statuses"] == []
    assert trigger.kwargs["last_status"] == "in_progress"  # the first poke ran before deferring
    assert trigger.kwargs["deadline"] > time.time()  # absolute, from the sensor's timeout


@_parametrize("branch-poke-completes", "branch-poke-fails")
def test_poke_mode_sensor_never_defers(outcomes: dict[str, Outcome], scenario: str) -> None:
    run = outcomes[scenario].run
    assert (run.deferred_tasks, run.triggers) == ([], []), run.describe()


@_parametrize("branch-poke-tool-calls")
def test_tool_call_step_reports_the_function_outputs(outcomes: dict[str, Outcome], scenario: str) -> None:
    outcome = outcomes[scenario]
    run = outcome.run
    assert run.states()["report_output"] == "success", run.describe()
    [call] = outcome.step_json(STEP_TOOL_CALLS)["step_details"]["tool_calls"]
    assert run.xcom("report_output") == {
        "step_id": STEP_TOOL_CALLS,
        "status": "completed",
        "tool_outputs": [{"id": call["id"], "type": "function", "output": "70 degrees and sunny."}],
    }


# -- DAG 2: inspect without waiting -------------------------------------------------------------------


@_parametrize("inspect-completed")
def test_inspect_passes_the_step_and_its_status_downstream(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    outcome = outcomes[scenario]
    run = outcome.run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states() == {"get_step": "success", "summarize_step": "success"}
    step = outcome.step_json("step_instant")
    assert run.xcom("get_step") == step
    assert run.xcom("get_step", "status") == "completed"
    assert run.xcom("summarize_step") == {
        "step_id": "step_instant",
        "status": "completed",
        "type": "message_creation",
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
        "last_error": None,
        "message_id": step["step_details"]["message_creation"]["message_id"],
    }
    assert outcome.step_gets("step_instant") == 1  # one look, no waiting


@_parametrize("inspect-failed")
def test_inspect_reports_a_failed_step_without_failing(outcomes: dict[str, Outcome], scenario: str) -> None:
    run = outcomes[scenario].run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states() == {"get_step": "success", "summarize_step": "success"}
    assert run.xcom("get_step", "status") == "failed"
    summary = run.xcom("summarize_step")
    assert (summary["step_id"], summary["status"]) == (ALREADY_FAILED, "failed")
    assert summary["last_error"] == RATE_LIMITED_ERROR


# -- DAG 3: mapped deferrable sensors -----------------------------------------------------------------


@_parametrize("mapped-all-complete")
def test_mapped_sensors_wait_on_every_step_from_the_upstream_task(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    outcome = outcomes[scenario]
    run = outcome.run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states() == {
        "choose_steps": "success",
        "collect_results": "success",
        "wait_for_step[0]": "success",
        "wait_for_step[1]": "success",
        "wait_for_step[2]": "success",
    }
    assert run.xcom("choose_steps") == list(STEP_MAP_IDS)
    for index, step_id in enumerate(STEP_MAP_IDS):
        assert run.xcom("wait_for_step", map_index=index) == outcome.step_json(step_id)
    assert run.xcom("collect_results") == dict.fromkeys(STEP_MAP_IDS, "completed")
    assert sorted(t.kwargs["step_id"] for t in run.triggers if t.classpath == TRIGGER) == list(STEP_MAP_IDS)
    assert run.deferred_tasks == ["wait_for_step"] * 3


@_parametrize("mapped-one-cancelled")
def test_mapped_run_fails_when_one_step_is_cancelled(outcomes: dict[str, Outcome], scenario: str) -> None:
    run = outcomes[scenario].run
    assert run.returncode != 0, run.describe()
    assert run.run_state == "failed"
    assert run.states() == {
        "choose_steps": "success",
        "collect_results": "upstream_failed",
        "wait_for_step[0]": "success",
        "wait_for_step[1]": "failed",
    }
    assert "run step step_cancelled of run run_demo (thread thread_demo) is cancelled" in run.output


# -- DAGs 5 and 6: background responses -----------------------------------------------------------------


def _response_json(outcome: Outcome, response_id: str) -> dict[str, Any]:
    """The response as the emulator renders it now (it has ended, so looking changes nothing)."""
    found = outcome.emulator.state.responses.retrieve(response_id)
    assert found is not None
    return found


@_parametrize("response-completes")
def test_a_completed_background_response_is_waited_on_deferred_and_its_text_used(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    outcome = outcomes[scenario]
    run = outcome.run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states() == ANSWERED_STATES
    response_id = run.xcom("ask", "response_id")
    assert run.xcom("ask")["status"] == "queued"
    assert run.xcom("wait_for_response") == _response_json(outcome, response_id)  # exactly as sent
    assert run.xcom("use_answer") == {
        "answer": "Emulated answer to: Why is the sky blue?",
        "total_tokens": 123,
    }
    assert run.deferred_tasks == ["wait_for_response"]
    [trigger] = run.triggers
    assert (trigger.classpath, trigger.kwargs["response_id"]) == (RESPONSE_TRIGGER, response_id)
    assert outcome.emulator.state.responses.created == 1


@_parametrize("response-fails", "response-incomplete")
def test_an_unsuccessful_background_response_takes_the_failure_branch_with_why(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    run = outcomes[scenario].run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states()["use_answer"] == "skipped"
    report = run.xcom("report_failure")
    assert report["status"] == run.xcom("wait_for_response", "status")
    expected = {
        "response-fails": {"code": "server_error", "message": "Sorry, something went wrong."},
        "response-incomplete": {"reason": "max_output_tokens"},
    }
    assert report["why"] == expected[scenario]


@_parametrize("response-chain")
def test_the_second_response_continues_the_first_and_the_tokens_add_up(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    outcome = outcomes[scenario]
    run = outcome.run
    assert (run.returncode, run.run_state) == (0, "success"), run.describe()
    assert run.states() == {"draft": "success", "refine": "success", "total_tokens": "success"}
    draft, refine = run.xcom("draft"), run.xcom("refine")
    assert (draft["status"], refine["status"]) == ("completed", "completed")
    assert refine["previous_response_id"] == draft["id"] == run.xcom("draft", "response_id")
    assert run.xcom("total_tokens") == draft["usage"]["total_tokens"] + refine["usage"]["total_tokens"]
    assert run.deferred_tasks == ["draft", "refine"]
    assert outcome.emulator.state.responses.created == 2


# -- every run -------------------------------------------------------------------------------------------


@_parametrize(*SCENARIOS)
def test_runs_leak_no_secret_and_raise_no_warning_from_our_code(
    outcomes: dict[str, Outcome], scenario: str
) -> None:
    run = outcomes[scenario].run
    # Minus Airflow's own MaskSecret registration lines (DEBUG on Airflow 3.0): they carry the
    # secret by design; every other line of the output is checked.
    output = without_mask_secret_requests(run.output)
    assert_no_secret(output, run.xcoms, [trigger.kwargs for trigger in run.triggers])
    assert run.python_warnings() == []
