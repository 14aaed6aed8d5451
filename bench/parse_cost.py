"""4. DAG-parse cost: import the provider, build a DAG of 100 sensors; vs PythonSensor and HttpSensor.

Each sample is a fresh interpreter that first imports ``airflow.sdk`` (and the names every DAG file
uses: ``DAG``, ``BaseOperator``, ``BaseSensorOperator``), then times (a) the import of the sensor
module(s) and (b) building a DAG with 100 tasks of that sensor. The provider's sample imports both
its sensor and operator modules; a fourth variant also loads, up front, what those modules import
only at execute time, to show what their local imports save. Variants alternate across rounds;
the figure is the median over rounds. A separate ``python -X importtime`` run lists what the
provider's import pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass

from bench.common import Result, Row, child_env, fmt, median

TARGET_IMPORT_MS = 20.0
TARGET_BUILD_RATIO = 1.2

VARIANTS: dict[str, tuple[str, str]] = {
    # name: (import statement, task constructor expression using i)
    "portkey": (
        "from airflow_provider_portkey.sensors.run_step import RunStepSensor\n"
        "from airflow_provider_portkey.operators.run_step import GetRunStepOperator",
        'RunStepSensor(task_id=f"wait_{i}", thread_id="thread_x", run_id="run_x", step_id=f"step_{i}")',
    ),
    # The same DAG if the sensor and operator modules imported at module level what they import at
    # execute time (the hooks, the triggers, the models, the request core): what the local imports save.
    "portkey_eager": (
        "from airflow_provider_portkey.sensors.run_step import RunStepSensor\n"
        "from airflow_provider_portkey.operators.run_step import GetRunStepOperator\n"
        "import airflow_provider_portkey.hooks.portkey, airflow_provider_portkey.hooks.portkey_async\n"
        "import airflow_provider_portkey.triggers.run, airflow_provider_portkey.triggers.run_step",
        'RunStepSensor(task_id=f"wait_{i}", thread_id="thread_x", run_id="run_x", step_id=f"step_{i}")',
    ),
    "python": (
        "from airflow.providers.standard.sensors.python import PythonSensor",
        'PythonSensor(task_id=f"wait_{i}", python_callable=_check, op_kwargs={"step_id": f"step_{i}"})',
    ),
    "http": (
        "from airflow.providers.http.sensors.http import HttpSensor",
        'HttpSensor(task_id=f"wait_{i}", http_conn_id="http_default", endpoint=f"steps/step_{i}")',
    ),
}

_PRELUDE = """\
import sys, time, json, datetime
import airflow.sdk
from airflow.sdk import DAG, BaseOperator, BaseSensorOperator
def _check(step_id): return True
"""

_CHILD = (
    _PRELUDE
    + """\
t0 = time.perf_counter()
{import_stmt}
t1 = time.perf_counter()
with DAG("bench_parse", schedule=None, start_date=datetime.datetime(2025, 1, 1)) as dag:
    for i in range({tasks}):
        {task}
t2 = time.perf_counter()
assert len(dag.tasks) == {tasks}, len(dag.tasks)
print(json.dumps({{"import_ms": (t1 - t0) * 1e3, "build_ms": (t2 - t1) * 1e3, "tasks": len(dag.tasks)}}))
"""
)

_MARK = "----bench-import-start----"


@dataclass
class Sample:
    import_ms: float
    build_ms: float
    tasks: int


def run(rounds: int = 9, tasks: int = 100, importtime: bool = True) -> Result:
    result = Result("parse_cost")
    samples: dict[str, list[Sample]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench-airflow-home-") as home:
        env = child_env(AIRFLOW_HOME=home)
        _child("pass", env)  # first start writes airflow.cfg: keep it out of the samples
        for r in range(rounds):
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                import_stmt, task = VARIANTS[name]
                code = _CHILD.format(import_stmt=import_stmt, task=task, tasks=tasks)
                samples[name].append(Sample(**json.loads(_child(code, env).strip().splitlines()[-1])))
        heavy = _importtime(env) if importtime else []
    imp = {name: median([s.import_ms for s in samples[name]]) for name in VARIANTS}
    build = {name: median([s.build_ms for s in samples[name]]) for name in VARIANTS}
    result.rows += [
        Row(
            "4 DAG parse",
            "import sensor+operator (extra after airflow.sdk)",
            imp["portkey"],
            "ms",
            imp["http"],
            "HttpSensor",
            f"<= {fmt(TARGET_IMPORT_MS)} ms",
            imp["portkey"] <= TARGET_IMPORT_MS,
        ),
        Row("4 DAG parse", "import (vs PythonSensor)", imp["portkey"], "ms", imp["python"], "PythonSensor"),
        Row(
            "4 DAG parse",
            "import if every module loaded eagerly (vs as shipped)",
            imp["portkey_eager"],
            "ms",
            imp["portkey"],
            "local imports",
        ),
        Row(
            "4 DAG parse",
            f"build DAG of {tasks} sensors",
            build["portkey"],
            "ms",
            build["http"],
            "HttpSensor",
            f"ratio <= {TARGET_BUILD_RATIO}",
            build["portkey"] <= TARGET_BUILD_RATIO * build["http"],
        ),
        Row(
            "4 DAG parse",
            f"build DAG of {tasks} sensors (vs PythonSensor)",
            build["portkey"],
            "ms",
            build["python"],
            "PythonSensor",
        ),
    ]
    result.checks = {
        "rounds": rounds,
        "samples": {name: len(samples[name]) for name in VARIANTS},
        "tasks": {name: sorted({s.tasks for s in samples[name]}) for name in VARIANTS},
        "import_ms": imp,
        "build_ms": build,
        "heavy_imports": heavy,
    }
    if heavy:
        listed = ", ".join(f"{module} {ms:.1f} ms" for module, ms in heavy[:12])
        result.notes.append(
            f"the provider's import pulls in (cumulative, top level, after airflow.sdk): {listed}"
        )
    return result


def _child(code: str, env: dict[str, str], *options: str) -> str:
    done = subprocess.run(
        [sys.executable, *options, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"parse-cost child failed ({done.returncode}): {done.stderr[-3000:]}")
    return done.stdout if not options else done.stderr


def _importtime(env: dict[str, str], min_ms: float = 1.0) -> list[tuple[str, float]]:
    """Top-level modules the provider's import loads (after airflow.sdk), heaviest first (cumulative ms)."""
    import_stmt = VARIANTS["portkey"][0]
    code = f"{_PRELUDE}sys.stderr.write({_MARK!r} + '\\n'); sys.stderr.flush()\n{import_stmt}\n"
    lines = _child(code, env, "-X", "importtime").splitlines()
    lines = lines[lines.index(_MARK) + 1 :] if _MARK in lines else []
    entries: list[tuple[int, str, float]] = []
    for line in lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        try:
            cumulative_us = int(parts[1])
        except ValueError:
            continue
        raw = parts[2]
        depth = (len(raw) - len(raw.lstrip(" "))) // 2
        entries.append((depth, raw.strip(), cumulative_us / 1e3))
    if not entries:
        return []
    # Entries come children-first; walking them backwards sees each parent before its children.
    # Keep our own root modules and each first non-provider module on a branch (what we pull in).
    chosen: list[tuple[str, float]] = []
    stack: list[tuple[int, str]] = []
    for depth, name, ms in reversed(entries):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        ours = name.startswith("airflow_provider_portkey")
        if ms >= min_ms and (parent is None or (not ours and parent.startswith("airflow_provider_portkey"))):
            chosen.append((name, ms))
        stack.append((depth, name))
    return sorted(chosen, key=lambda item: -item[1])
