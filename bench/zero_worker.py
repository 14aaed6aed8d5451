"""Zero-worker waits against today's deferrable path, in one real Airflow deployment (Airflow >= 3.3).

python -m bench.zero_worker                 # 200 sensors per path (several minutes on 2 cores)
python -m bench.zero_worker --sensors 20    # a quick check

One deployment (``tests/deployment/harness.py``: api-server, scheduler with LocalExecutor,
dag-processor, one triggerer, SQLite) runs two DAGs of ``--sensors`` plain (unmapped)
``RunStepSensor``\\ s each, one after the other: ``deferrable=True`` (a worker checks, defers, and
resumes) and ``deferrable=True, start_from_trigger=True``. Each step answers ``in_progress`` twice,
then ``completed``. Per path it reports:

- worker launches per sensor: task-runner starts, counted from the worker task logs (each start
  logs ``DAG bundles loaded`` once; the triggerer writes to separate ``.trigger.`` files);
- step completed -> task success: the emulator's arrival time of the ``completed`` GET to the task
  instance's ``end_date`` (median, max);
- CPU seconds of the scheduler's and the triggerer's process groups over the phase, from
  ``/proc/<pid>/stat`` (``utime+stime`` of each process in the group, plus ``cutime+cstime``: the
  task runners the executor's workers reaped);
- the machine's load average before and after (other work on the machine inflates every figure);
- the zero-worker / deferrable ratio of each figure (both paths run in the same deployment).

Before the measured phases one zero-worker sensor runs alone (``bench_warmup``): the triggerer
builds Airflow's in-process execution API at its first Task SDK request (here the first XCom push,
as the connection comes from an environment variable; with connections in the database, the first
connection lookup), a one-time cost of seconds to tens of seconds on a loaded 2-core machine that
would otherwise land on the first zero-worker success. Its latency is printed as well.

The deployment's files (logs, database) stay in the folder it prints.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from airflow_provider_portkey.emulator import EmulatorServer
from tests.deployment.harness import TASK_RUNNER_START_MARK, Deployment
from tests.deployment.scenarios import StampedState, step_path
from tests.support.secrets import API_KEY, PROVIDER_KEY, VIRTUAL_KEY

THREAD_ID = "thread_bench_zero_worker"
RUN_ID = "run_bench_zero_worker"
STATUSES = ("in_progress", "in_progress", "completed")
POKE_INTERVAL = 5
PATHS = {"deferrable": False, "zero_worker": True}
#: Runs first, unmeasured against the others: see the module docstring.
WARMUP = "warmup"

DAG_FILE = '''"""Benchmark DAGs: {sensors} RunStepSensors per path (see bench/zero_worker.py)."""
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_portkey.sensors.run_step import RunStepSensor

for name, zero in {paths!r}.items():
    with DAG(f"bench_{{name}}", schedule=None, start_date=datetime(2025, 1, 1), catchup=False,
             max_active_tasks={sensors}):
        for index in range(1 if name == "warmup" else {sensors}):
            RunStepSensor(
                task_id=f"wait_{{index:03d}}", thread_id="{thread}", run_id="{run}",
                step_id=f"step_{{name}}_{{index:03d}}", deferrable=True, start_from_trigger=zero,
                poke_interval={poke}, timeout=timedelta(minutes=30), retries=0,
            )
'''


def _group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of every process in group ``pgid`` and of the children they reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After "(comm)": state, ppid, pgrp, ...; utime, stime, cutime, cstime at 11-14 (proc(5) 14-17).
        if int(fields[2]) == pgid:
            total += sum(int(value) for value in fields[11:15])
    return total / ticks


def _launches(deployment: Deployment, dag_id: str, run_id: str) -> list[int]:
    """Task-runner starts per task of a run, from the worker task logs (not the trigger logs)."""
    folder = deployment.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    counts = []
    for task in sorted(folder.glob("task_id=*")) if folder.is_dir() else []:
        logs = [path for path in task.glob("attempt=*.log") if ".trigger." not in path.name]
        counts.append(sum(path.read_text(errors="replace").count(TASK_RUNNER_START_MARK) for path in logs))
    return counts


def _phase(deployment: Deployment, state: StampedState, name: str, sensors: int) -> dict[str, Any]:
    dag_id = f"bench_{name}"
    groups = {part: deployment.components[part].pid for part in ("scheduler", "triggerer-1")}
    load_before = os.getloadavg()[0]
    cpu_before = {part: _group_cpu_seconds(pgid) for part, pgid in groups.items()}
    started = time.monotonic()
    run_id = deployment.trigger(dag_id)
    deployment.wait_for(
        f"{dag_id} finished",
        lambda: deployment.run_state(dag_id, run_id) in ("success", "failed"),
        timeout=3600,
        interval=1.0,
    )
    seconds = time.monotonic() - started
    cpu = {part: _group_cpu_seconds(pgid) - cpu_before[part] for part, pgid in groups.items()}
    tis = deployment.task_instances(dag_id, run_id)
    latencies = []
    for index in range(sensors):
        path = step_path(THREAD_ID, RUN_ID, f"step_{name}_{index:03d}")
        gets = [at for at, arrived in state.arrivals if arrived == path]
        end = tis[(f"wait_{index:03d}", -1)].end_date
        if len(gets) >= len(STATUSES) and end is not None:
            latencies.append(end.timestamp() - gets[len(STATUSES) - 1])
    launches = _launches(deployment, dag_id, run_id)
    return {
        "path": name,
        "run_state": deployment.run_state(dag_id, run_id),
        "succeeded": sum(ti.state == "success" for ti in tis.values()),
        "worker_launches_per_sensor": sum(launches) / sensors,
        "latency_median_s": statistics.median(latencies) if latencies else None,
        "latency_max_s": max(latencies) if latencies else None,
        "scheduler_cpu_s": cpu["scheduler"],
        "triggerer_cpu_s": cpu["triggerer-1"],
        "phase_s": seconds,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def run(sensors: int) -> list[dict[str, Any]]:
    emulator = EmulatorServer(mode="portkey")
    state = StampedState(seed=False, api_keys=[API_KEY])
    emulator.state = state
    for name in PATHS:
        for index in range(sensors):
            state.add_step(THREAD_ID, RUN_ID, f"step_{name}_{index:03d}", statuses=STATUSES)
    state.add_step(THREAD_ID, RUN_ID, f"step_{WARMUP}_000", statuses=STATUSES)
    # Kept afterwards (logs, database) for a look at what a figure came from.
    root = Path(tempfile.mkdtemp(prefix="bench-zero-worker-"))
    print(f"deployment in {root}", flush=True)
    with emulator:
        dag_file = root / "bench_zero_worker_dags.py"
        dag_file.write_text(
            DAG_FILE.format(
                sensors=sensors,
                paths={WARMUP: True, **PATHS},
                thread=THREAD_ID,
                run=RUN_ID,
                poke=POKE_INTERVAL,
            )
        )
        connection = {
            "conn_type": "portkey",
            "host": emulator.url,
            "password": API_KEY,
            "extra": {"virtual_key": VIRTUAL_KEY, "provider": "openai", "provider_api_key": PROVIDER_KEY},
        }
        deployment = Deployment(
            root=root / "deployment",
            db_url=f"sqlite:///{root / 'airflow.db'}",
            dag_files=[dag_file],
            connection=connection,
        )
        # One triggerer runs every wait of a phase.
        deployment.env["AIRFLOW__TRIGGERER__CAPACITY"] = str(2 * sensors)
        try:
            deployment.migrate()
            deployment.start_all()
            deployment.wait_healthy()
            return [
                _phase(deployment, state, WARMUP, 1),
                *(_phase(deployment, state, name, sensors) for name in PATHS),
            ]
        finally:
            deployment.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = run(args.sensors)
    for result in results:
        print(json.dumps(result))
    today, zero = (next(r for r in results if r["path"] == name) for name in PATHS)
    ratios = {
        figure: zero[figure] / today[figure] if zero[figure] is not None and today[figure] else None
        for figure in ("worker_launches_per_sensor", "latency_median_s", "scheduler_cpu_s", "triggerer_cpu_s")
    }
    print(json.dumps({"zero_worker / deferrable": ratios}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
