"""What the deployment tier does in one deployment, in order, and what it records on the way.

:func:`run_scenarios` scripts the emulator, triggers every scenario DAG and drives the triggerers:

1. one triggerer (``triggerer-1``); the triggerer-kill DAG (24 mapped sensors) and the failing-step
   DAG start;
2. once at least 20 kill-DAG sensors are deferred and each has been polled from the triggerer,
   ``triggerer-1`` is SIGKILLed; no request may arrive until its heartbeat is older than the
   health-check threshold (then its triggers may move);
3. two triggerers start at once (``triggerer-2``, ``triggerer-3``) with the 40-step mapped DAG, the
   agent-workflow example, the background-response example and the create-and-wait DAG
   (``deploy_durable``); once every kill-DAG step was polled again, those steps complete; then
   ``agent_killed``, deferred and polled from a triggerer, is marked failed through the REST API,
   and its run must get a cancel;
4. every DAG run ends; the components stop; :class:`TierRun` holds what the tests assert on.

Trigger rows are snapshotted while they exist (the triggerer deletes them when they are done), so
the tests can check their kwargs afterwards.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_provider_portkey.emulator import EmulatorServer, EmulatorState, ReceivedRequest
from airflow_provider_portkey.emulator.background import MODEL_COMPLETES
from tests.deployment.dags import deploy_durable, deploy_failing, deploy_zero_worker
from tests.deployment.dags.deploy_mapped import KILL, MAPPED
from tests.deployment.harness import (
    TRIGGERER_HEALTH_CHECK_THRESHOLD,
    Deployment,
    DeploymentError,
    TaskInstanceRow,
    TriggerRow,
)
from tests.example_dags.background_response import DAG_ID as BACKGROUND_DAG_ID

AGENT_DAG_ID = "portkey_agent_workflow"
#: The human-approval example: a person (here the REST API, as the UI calls it) approves the tool call.
APPROVAL_DAG_ID = "portkey_approve_tool_calls"
APPROVAL_TASK_ID = "approve_tool_calls"
AGENT_CONF = {"assistant_id": "asst_tools", "question": "What is the weather in Paris?"}
BACKGROUND_CONF = {"model": "emulator-completes", "question": "Why is the sky blue?"}
#: Statuses of a mapped step: the sensor's own check, then the trigger's polls until it completes.
MAPPED_STATUSES = ("in_progress", "in_progress", "in_progress", "completed")
FAILED_STATUSES = ("in_progress", "in_progress", "failed")
KILL_MIN_DEFERRED = 20
RUN_TIMEOUT = 240.0


class StampedState(EmulatorState):
    """The emulator's state, also noting when each request arrived (wall clock, for latencies)."""

    def __init__(self, **kwargs: Any) -> None:
        self.arrivals: list[tuple[float, str]] = []
        super().__init__(**kwargs)

    def record(self, request: ReceivedRequest) -> None:
        self.arrivals.append((time.time(), request.path))
        super().record(request)


def step_path(spec_thread: str, spec_run: str, step_id: str) -> str:
    return f"/v1/threads/{spec_thread}/runs/{spec_run}/steps/{step_id}"


@dataclass
class TierRun:
    """Everything one deployment's scenarios produced, for the tests to assert on."""

    deployment: Deployment
    emulator: EmulatorServer
    #: Where the metadata database keeps its bytes (for the secret scan): a folder and a glob in it.
    database_files: tuple[Path, str]
    run_ids: dict[str, str] = field(default_factory=dict)
    run_states: dict[str, str | None] = field(default_factory=dict)
    task_instances: dict[str, dict[tuple[str, int], TaskInstanceRow]] = field(default_factory=dict)
    xcoms: dict[str, dict[tuple[str, int, str], Any]] = field(default_factory=dict)
    #: Every trigger row seen while the scenarios ran, by id.
    triggers: dict[int, TriggerRow] = field(default_factory=dict)
    #: Kill scenario: trigger id -> (deadline kwarg, Airflow's trigger_timeout) before the kill.
    kill_deadlines_before: dict[int, tuple[float, datetime | None]] = field(default_factory=dict)
    kill_deadlines_after: dict[int, tuple[float, datetime | None]] = field(default_factory=dict)
    deferred_at_kill: int = 0
    #: Approval scenario (Airflow 3.1+): the HITL detail the API showed before the answer, the answer's
    #: response, and the task's state while it waited. On 3.0: the DAG file's import error instead.
    hitl_detail: dict[str, Any] = field(default_factory=dict)
    hitl_answer: dict[str, Any] = field(default_factory=dict)
    approval_waiting_state: str | None = None
    approval_import_error: str | None = None
    requests_while_down: int = 0
    seconds_down: float = 0.0
    recovery_seconds: float = 0.0
    tier_seconds: float = 0.0
    #: Create-and-wait: the thread ``agent_retried`` runs on, and the killed task's run.
    durable_thread: str = ""
    #: The background response the zero-worker DAG waits on (the one response no DAG created).
    zero_worker_response: str = ""
    killed_run: dict[str, Any] = field(default_factory=dict)
    #: Seconds from marking ``agent_killed`` failed to the cancel reaching the emulator.
    cancel_seconds: float | None = None  # None before 3.3: no trigger on_kill, no cancel
    healthy_seconds: float = 0.0

    @property
    def state(self) -> StampedState:
        state = self.emulator.state
        assert isinstance(state, StampedState)
        return state

    def step_gets(self, spec_thread: str, spec_run: str, step_id: str) -> list[float]:
        """Arrival times of the GETs of one step."""
        path = step_path(spec_thread, spec_run, step_id)
        return [at for at, arrived in self.state.arrivals if arrived == path]

    def describe(self) -> str:
        return f"runs {self.run_states}\n{self.deployment.describe()}"


def script_emulator(state: EmulatorState) -> None:
    for spec, statuses in ((MAPPED, MAPPED_STATUSES), (KILL, ("in_progress",))):
        for step_id in spec.step_ids:
            state.add_step(spec.thread_id, spec.run_id, step_id, statuses=statuses)
    for step_id in (deploy_failing.FAILING_STEP, deploy_failing.OBSERVED_STEP):
        state.add_step(
            deploy_failing.THREAD_ID,
            deploy_failing.RUN_ID,
            step_id,
            statuses=FAILED_STATUSES,
            last_error=deploy_failing.LAST_ERROR,
        )


ZERO_WORKER_COMPLETED_STATUSES = ("in_progress", "in_progress", "completed")


def start_zero_worker(run: TierRun) -> None:
    """Script the zero-worker DAG's steps and trigger it (it ends on its own, with the others)."""
    spec = deploy_zero_worker
    state = run.state
    state.add_step(spec.THREAD_ID, spec.RUN_ID, spec.COMPLETED_STEP, statuses=ZERO_WORKER_COMPLETED_STATUSES)
    state.add_step(
        spec.THREAD_ID, spec.RUN_ID, spec.FAILED_STEP, statuses=FAILED_STATUSES, last_error=spec.LAST_ERROR
    )
    state.add_step(spec.THREAD_ID, spec.RUN_ID, spec.ENDLESS_STEP, statuses=("in_progress",))
    for step_id in spec.MAPPED_STEPS:
        state.add_step(spec.THREAD_ID, spec.RUN_ID, step_id, statuses=ZERO_WORKER_COMPLETED_STATUSES)
    response = state.responses.create({"model": MODEL_COMPLETES, "input": "Hi", "background": True})
    run.zero_worker_response = response["id"]
    run.run_ids[spec.DAG_ID] = run.deployment.trigger(spec.DAG_ID, {"response_id": response["id"]})


def _snapshot_triggers(run: TierRun) -> dict[int, TriggerRow]:
    current = run.deployment.triggers()
    run.triggers.update(current)
    return current


def _kill_dag_triggers(run: TierRun) -> dict[int, tuple[TaskInstanceRow, TriggerRow]]:
    """Deferred kill-DAG task instances with their trigger rows, by trigger id."""
    current = _snapshot_triggers(run)
    tis = run.deployment.task_instances(KILL.dag_id, run.run_ids[KILL.dag_id])
    return {
        ti.trigger_id: (ti, current[ti.trigger_id])
        for ti in tis.values()
        if ti.state == "deferred" and ti.trigger_id in current
    }


def _deadlines(
    pairs: dict[int, tuple[TaskInstanceRow, TriggerRow]],
) -> dict[int, tuple[float, datetime | None]]:
    return {
        trigger_id: (float(trigger.kwargs["deadline"]), ti.trigger_timeout)
        for trigger_id, (ti, trigger) in pairs.items()
    }


def _heartbeat_stale(run: TierRun, job_id: int) -> bool:
    _, heartbeat = run.deployment.triggerer_jobs()[job_id]
    if heartbeat is None:
        return True
    return (datetime.now(UTC) - heartbeat).total_seconds() > TRIGGERER_HEALTH_CHECK_THRESHOLD


def run_scenarios(run: TierRun) -> None:
    deployment, state = run.deployment, run.state
    started = time.monotonic()
    script_emulator(state)
    deployment.migrate()
    deployment.start_all()
    deployment.wait_healthy()
    run.healthy_seconds = time.monotonic() - started

    # 1. One triggerer: the kill DAG and the failing-step DAG.
    run.run_ids[KILL.dag_id] = deployment.trigger(KILL.dag_id)
    run.run_ids[deploy_failing.DAG_ID] = deployment.trigger(deploy_failing.DAG_ID)
    start_zero_worker(run)

    def enough_deferred_and_polled() -> dict[int, tuple[TaskInstanceRow, TriggerRow]] | None:
        pairs = _kill_dag_triggers(run)
        # Each polled at least twice: the sensor's own check, then the trigger on the triggerer.
        polled = [
            pair
            for pair in pairs.values()
            if pair[1].triggerer_id is not None
            and len(run.step_gets(KILL.thread_id, KILL.run_id, pair[1].kwargs["step_id"])) >= 2
        ]
        return pairs if len(polled) >= KILL_MIN_DEFERRED else None

    before = deployment.wait_for(
        f"{KILL_MIN_DEFERRED} kill-DAG sensors deferred and polled from the triggerer",
        enough_deferred_and_polled,
        RUN_TIMEOUT,
    )

    # 2. SIGKILL the only triggerer; nothing may poll until its triggers are free to move.
    [old_job] = {trigger.triggerer_id for _, trigger in before.values() if trigger.triggerer_id is not None}
    deployment.kill("triggerer-1")
    killed_at = time.time()
    before = _kill_dag_triggers(run)  # sensors that deferred since are in too
    run.deferred_at_kill = len(before)
    run.kill_deadlines_before = _deadlines(before)
    waiting = {
        step_path(KILL.thread_id, KILL.run_id, trigger.kwargs["step_id"]) for _, trigger in before.values()
    }
    deployment.wait_for(
        "the killed triggerer's heartbeat older than the threshold",
        lambda: _heartbeat_stale(run, old_job),
        TRIGGERER_HEALTH_CHECK_THRESHOLD + 30,
    )
    restarted_at = time.time()
    run.seconds_down = restarted_at - killed_at
    run.requests_while_down = sum(
        1 for at, path in state.arrivals if killed_at <= at <= restarted_at and path in waiting
    )

    # 3. Two triggerers at once, the big mapped DAG and the two example DAGs.
    deployment.start_triggerer("triggerer-2")
    deployment.start_triggerer("triggerer-3")
    run.run_ids[MAPPED.dag_id] = deployment.trigger(MAPPED.dag_id)
    run.run_ids[AGENT_DAG_ID] = deployment.trigger(AGENT_DAG_ID, AGENT_CONF)
    run.run_ids[BACKGROUND_DAG_ID] = deployment.trigger(BACKGROUND_DAG_ID, BACKGROUND_CONF)
    run.durable_thread = state.create_thread({})["id"]
    # The first look at agent_retried's run fails for good (404): the task fails after its create.
    state.add_fault("status", path_contains=f"/threads/{run.durable_thread}/runs/run_", status=404)
    run.run_ids[deploy_durable.DAG_ID] = deployment.trigger(
        deploy_durable.DAG_ID, {"thread_id": run.durable_thread}
    )

    def recovered() -> dict[int, tuple[TaskInstanceRow, TriggerRow]] | None:
        pairs = _kill_dag_triggers(run)
        polled_again = {path for at, path in state.arrivals if at > restarted_at}
        return pairs if waiting <= polled_again else None

    if has_hitl():
        run.run_ids[APPROVAL_DAG_ID] = deployment.trigger(APPROVAL_DAG_ID)
    after = deployment.wait_for("every kill-DAG step polled by a new triggerer", recovered, RUN_TIMEOUT)
    run.recovery_seconds = time.time() - killed_at
    run.kill_deadlines_after = _deadlines({k: v for k, v in after.items() if k in before})
    for step_id in KILL.step_ids:
        state.add_step(KILL.thread_id, KILL.run_id, step_id, statuses=("completed",))

    _kill_deferred_agent(run)
    if has_hitl():
        approve_through_the_rest_api(run)
    else:
        run.approval_import_error = _import_error(run, f"{APPROVAL_DAG_ID}.py")

    # 4. Every run ends.
    def all_done() -> bool:
        _snapshot_triggers(run)
        states = {dag_id: deployment.run_state(dag_id, run_id) for dag_id, run_id in run.run_ids.items()}
        return all(value in ("success", "failed") for value in states.values())

    deployment.wait_for("every DAG run finished", all_done, RUN_TIMEOUT, interval=0.5)
    run.tier_seconds = time.monotonic() - started
    for dag_id, run_id in run.run_ids.items():
        run.run_states[dag_id] = deployment.run_state(dag_id, run_id)
        run.task_instances[dag_id] = deployment.task_instances(dag_id, run_id)
        run.xcoms[dag_id] = deployment.xcoms(dag_id, run_id)


def _kill_deferred_agent(run: TierRun) -> None:
    """Mark ``agent_killed`` failed while a triggerer polls its run; wait for the run's cancel."""
    deployment, state = run.deployment, run.state
    dag_id, dag_run = deploy_durable.DAG_ID, run.run_ids[deploy_durable.DAG_ID]

    def deferred_and_polled() -> dict[str, Any] | None:
        _snapshot_triggers(run)  # the mapped DAG's triggers come and go meanwhile
        ti = deployment.task_instances(dag_id, dag_run).get((deploy_durable.KILLED_TASK, -1))
        slow = [r for r in state.runs if r.get("assistant_id") == "asst_slow"]
        if ti is None or ti.state != "deferred" or len(slow) != 1:
            return None
        path = f"/v1/threads/{slow[0]['thread_id']}/runs/{slow[0]['id']}"
        gets = [at for at, arrived in state.arrivals if arrived == path]
        return slow[0] if len(gets) >= 2 else None  # the worker's look, then the trigger's

    run.killed_run = deployment.wait_for("agent_killed deferred and polled", deferred_and_polled, RUN_TIMEOUT)
    cancel = f"/v1/threads/{run.killed_run['thread_id']}/runs/{run.killed_run['id']}/cancel"
    marked_at = time.time()

    def marked_failed() -> bool:
        _snapshot_triggers(run)
        # The same PATCH again is harmless; a loaded SQLite deployment can answer 500 (a write lost to
        # a lock), as the UI would show before the user clicks again.
        try:
            deployment.api(
                "PATCH",
                f"dags/{dag_id}/dagRuns/{dag_run}/taskInstances/{deploy_durable.KILLED_TASK}",
                {"new_state": "failed"},
            )
        except DeploymentError as error:
            if "HTTP 5" not in str(error):
                raise
            return False
        return True

    deployment.wait_for("agent_killed marked failed through the REST API", marked_failed, 60, interval=2)

    def cancelled() -> float | None:
        _snapshot_triggers(run)
        return next((at for at, path in state.arrivals if path == cancel), None)

    from tests.support.airflow_compat import AIRFLOW_VERSION

    if AIRFLOW_VERSION.release < (3, 3):
        return  # no on_kill for triggers before 3.3: the run goes on (the test checks no cancel came)
    deployment.wait_for("the killed task's run cancelled", cancelled, RUN_TIMEOUT)
    run.cancel_seconds = time.time() - marked_at


def has_hitl() -> bool:
    from tests.support.airflow_compat import AIRFLOW_VERSION

    return AIRFLOW_VERSION.release >= (3, 1)


def approve_through_the_rest_api(run: TierRun) -> None:
    """Wait until the approval task waits for a person, read what it shows, and answer "Approve"."""
    deployment = run.deployment
    dag_run_id = run.run_ids[APPROVAL_DAG_ID]
    # What the UI calls (Airflow 3.1+; read in 3.3.2's api_fastapi/core_api/routes/public/hitl.py).
    path = f"dags/{APPROVAL_DAG_ID}/dagRuns/{dag_run_id}/taskInstances/{APPROVAL_TASK_ID}/-1/hitlDetails"

    parked = (
        "executor event with state success for task instance "
        f"TaskInstanceKey(dag_id='{APPROVAL_DAG_ID}', task_id='{APPROVAL_TASK_ID}'"
    )

    def waiting() -> str | None:
        _snapshot_triggers(run)  # the other DAGs' waits come and go meanwhile
        tis = deployment.task_instances(APPROVAL_DAG_ID, dag_run_id)
        ti = tis.get((APPROVAL_TASK_ID, -1))
        if ti is not None and ti.state in ("success", "failed", "upstream_failed", "skipped"):
            raise DeploymentError(f"the approval task ended without an answer: {tis}")
        if ti is None or ti.state not in ("awaiting_input", "deferred"):
            return None
        # Airflow 3.3.2 fails the task if the answer resumes it before the scheduler has seen the
        # parked worker exit ("finished with state success, but the task instance's state attribute
        # is queued"): a person is never that fast; the test waits for that executor event.
        return ti.state if parked in deployment.component_log("scheduler") else None

    run.approval_waiting_state = deployment.wait_for(
        "the approval task waiting for a person", waiting, RUN_TIMEOUT
    )
    run.hitl_detail = deployment.api("GET", path)
    run.hitl_answer = deployment.api("PATCH", path, {"chosen_options": ["Approve"], "params_input": {}})


def _import_error(run: TierRun, filename: str) -> str:
    def found() -> str | None:
        errors = run.deployment.api("GET", "importErrors")["import_errors"]
        return next((e["stack_trace"] for e in errors if e["filename"].endswith(filename)), None)

    return run.deployment.wait_for(f"the import error of {filename}", found, RUN_TIMEOUT)


def mapped_latencies(run: TierRun) -> list[float]:
    """Seconds from each mapped step's first terminal answer to its sensor's success (end_date)."""
    tis = run.task_instances[MAPPED.dag_id]
    latencies = []
    for index, step_id in enumerate(MAPPED.step_ids):
        terminal_get = run.step_gets(MAPPED.thread_id, MAPPED.run_id, step_id)[len(MAPPED_STATUSES) - 1]
        end = tis[("wait", index)].end_date
        if end is None:
            raise DeploymentError(f"{MAPPED.dag_id} wait[{index}] has no end date")
        latencies.append(end.timestamp() - terminal_get)
    return latencies


def request_counts(run: TierRun) -> Counter[int]:
    """GETs per mapped step -> how many steps got that many."""
    return Counter(
        len(run.step_gets(MAPPED.thread_id, MAPPED.run_id, step_id)) for step_id in MAPPED.step_ids
    )
