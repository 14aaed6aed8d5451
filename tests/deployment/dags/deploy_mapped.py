"""Many mapped deferrable ``RunStepSensor``\\ s, then a task that checks every XCom against the API.

Two DAGs of one shape: ``deploy_mapped_steps`` (40 steps: the throughput and two-triggerer
scenarios) and ``deploy_triggerer_kill`` (24 steps: the triggerer is killed while they wait).
``check_every_xcom`` lists the run's steps from the API (a list call does not move the emulator's
steps along) and fails unless each sensor's XCom is its own step's JSON, exactly as listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from airflow_provider_portkey.sensors.run_step import RunStepSensor

#: Seconds between polls. Not shorter: Airflow (3.0 to 3.3 at least) may fail a deferred task whose
#: trigger fires before the scheduler has processed the worker's exit at deferral ("finished with
#: state success, but the task instance's state attribute is queued", apache/airflow#67287), and a
#: loaded scheduler takes seconds to do that.
POKE_INTERVAL = 5


@dataclass(frozen=True)
class StepsDag:
    dag_id: str
    thread_id: str
    run_id: str
    size: int

    @property
    def step_ids(self) -> list[str]:
        return [f"step_{self.dag_id}_{index:02d}" for index in range(self.size)]


MAPPED = StepsDag("deploy_mapped_steps", "thread_deploy_mapped", "run_deploy_mapped", 40)
KILL = StepsDag("deploy_triggerer_kill", "thread_deploy_kill", "run_deploy_kill", 24)


def steps_dag(spec: StepsDag) -> None:
    @dag(
        dag_id=spec.dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        max_active_tasks=64,
        tags=["portkey", "deployment-tier"],
    )
    def build() -> None:
        waits = RunStepSensor.partial(
            task_id="wait",
            thread_id=spec.thread_id,
            run_id=spec.run_id,
            deferrable=True,
            poke_interval=POKE_INTERVAL,
            timeout=timedelta(minutes=10),
        ).expand(step_id=spec.step_ids)

        @task
        def check_every_xcom(steps: Any) -> int:
            from airflow_provider_portkey.hooks.portkey import PortkeyHook

            with PortkeyHook() as hook:
                listed = {
                    step.id: step.to_json() for step in hook.list_run_steps(spec.thread_id, spec.run_id)
                }
            pushed = list(steps)
            wrong = [
                f"{expected}: got {step.get('id')!r}"
                for expected, step in zip(spec.step_ids, pushed, strict=True)
                if step != listed[expected]
            ]
            if wrong:
                raise ValueError(f"{len(wrong)} XComs are not their own step's JSON: {wrong}")
            return len(pushed)

        check_every_xcom(waits.output)

    build()


steps_dag(MAPPED)
steps_dag(KILL)
