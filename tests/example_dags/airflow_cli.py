"""Run the example DAGs the way users do: ``airflow dags test`` in a subprocess, on SQLite.

:func:`migrate_template` runs ``airflow db migrate`` once into a template directory; every
:func:`run_dag` call then copies that database into its own fresh ``AIRFLOW_HOME``, so runs are
isolated from each other (and can run in parallel) without paying for a migration each time.
After the run, :class:`DagRunResult` holds what the database says: the DAG run's state, each task
instance's state, every XCom value and every trigger that was created (proof of deferral).

The child's environment is the parent's minus every ``AIRFLOW*`` variable, plus exactly the
settings a run needs, so a developer's own Airflow setup cannot leak in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_compat import stored_trigger_kwargs

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "example_dags"
DB_NAME = "airflow.db"
MIGRATE_TIMEOUT = 120.0
RUN_TIMEOUT = 180.0

#: Where tests record how long their DAG runs took, for the terminal summary.
DAG_RUN_TIMINGS = pytest.StashKey[list[str]]()

# Airflow routes Python warnings into its log as `[py.warnings] category=... filename=...`.
_WARNING_LINE = re.compile(r"\[py\.warnings\].*?category=(?P<category>\S+).*?filename=(?P<filename>\S+)")


# Airflow's own DEBUG line as a task registers a value with the secret masker: it carries the secret
# by design (``airflow dags test`` logs at DEBUG on Airflow 3.0; later releases do not print it).
_MASK_SECRET_REQUEST = re.compile(r"^.*\[debug\s*\] Sending request\s+msg=MaskSecret\(.*$", re.MULTILINE)


def without_mask_secret_requests(output: str) -> str:
    """``output`` minus Airflow's own secret-masker registration lines (and nothing else)."""
    return _MASK_SECRET_REQUEST.sub("", output)


class AirflowCliError(RuntimeError):
    """An ``airflow`` command did not finish, or finished without the expected database."""


def in_virtualenv(filename: str) -> bool:
    """Whether ``filename`` belongs to the running virtualenv (``.venv``, ``.venv-airflow-3.0``, ...)."""
    return Path(filename).resolve().is_relative_to(Path(sys.prefix).resolve())


def airflow_env(home: Path, *, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an ``airflow`` child process using ``home`` (SQLite, example DAGs only)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / DB_NAME}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "PYTHONUNBUFFERED": "1",
            # The output is a file, not a terminal: without a width, Airflow 3.0's rich tracebacks
            # wrap every line (the final "Error: message" line included) at 80 columns.
            "COLUMNS": "200",
        }
    )
    env.update(extra or {})
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float, log_path: Path) -> tuple[int, str]:
    """Run ``argv`` with stdout+stderr in ``log_path``; kill its whole process group on timeout."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            env=env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            output = log_path.read_text(errors="replace")
            raise AirflowCliError(
                f"{' '.join(argv)} did not finish within {timeout:g} s; its output:\n{output[-5000:]}"
            ) from None
    return returncode, log_path.read_text(errors="replace")


def airflow_argv(*args: str) -> list[str]:
    """``python -m airflow ARGS`` with this interpreter, so the child uses the same virtualenv."""
    return [sys.executable, "-m", "airflow", *args]


def migrate_template(directory: Path) -> Path:
    """Create a migrated SQLite metadata database in ``directory``; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    returncode, output = _run(
        airflow_argv("db", "migrate"), airflow_env(directory), MIGRATE_TIMEOUT, directory / "migrate.log"
    )
    database = directory / DB_NAME
    if returncode != 0 or not database.is_file():
        raise AirflowCliError(f"airflow db migrate exited with {returncode}:\n{output[-5000:]}")
    return database


@dataclass(frozen=True)
class TriggerRow:
    classpath: str
    kwargs: dict[str, Any]


@dataclass
class DagRunResult:
    """One ``airflow dags test`` run, as its exit code, its output and the database tell it."""

    dag_id: str
    returncode: int
    output: str
    log_path: Path
    seconds: float
    run_state: str | None = None
    task_states: dict[tuple[str, int], str | None] = field(default_factory=dict)
    xcoms: dict[tuple[str, int, str], Any] = field(default_factory=dict)
    triggers: list[TriggerRow] = field(default_factory=list)
    deferred_tasks: list[str] = field(default_factory=list)

    def state(self, task_id: str, map_index: int = -1) -> str | None:
        return self.task_states[(task_id, map_index)]

    def states(self) -> dict[str, str | None]:
        """Unmapped task id (or ``task_id[i]`` for a mapped one) -> final state."""
        return {
            task_id if index < 0 else f"{task_id}[{index}]": state
            for (task_id, index), state in sorted(self.task_states.items())
        }

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        return self.xcoms[(task_id, map_index, key)]

    def python_warnings(self) -> list[str]:
        """Warning lines whose source file is in this repository but not in the running virtualenv."""
        found = []
        for line in self.output.splitlines():
            match = _WARNING_LINE.search(line)
            if match is None:
                continue
            filename = match["filename"]
            if filename.startswith(str(REPO_ROOT)) and not in_virtualenv(filename):
                found.append(line)
        return found

    def describe(self) -> str:
        """For assertion messages: states, exit code and the end of the log."""
        return (
            f"airflow dags test {self.dag_id} exited {self.returncode} in {self.seconds:.1f} s; "
            f"run {self.run_state}; tasks {self.states()}; log {self.log_path}\n"
            f"--- last lines ---\n{self.output[-4000:]}"
        )


def _json_value(stored: Any) -> Any:
    """An XCom value from SQLite: the JSON column has numeric affinity, so a bare number comes back as one."""
    return json.loads(stored) if isinstance(stored, str | bytes) else stored


def _read_database(database: Path, result: DagRunResult) -> None:
    with closing(sqlite3.connect(database)) as db:
        runs = db.execute("SELECT state FROM dag_run WHERE dag_id = ?", (result.dag_id,)).fetchall()
        if len(runs) != 1:
            raise AirflowCliError(f"expected one run of {result.dag_id}, found {len(runs)}\n{result.output}")
        result.run_state = runs[0][0]
        rows = db.execute(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ?", (result.dag_id,)
        )
        result.task_states = {(task_id, index): state for task_id, index, state in rows}
        rows = db.execute(
            "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ?", (result.dag_id,)
        )
        result.xcoms = {(task_id, index, key): _json_value(value) for task_id, index, key, value in rows}
        rows = db.execute("SELECT classpath, kwargs FROM trigger ORDER BY id")
        result.triggers = [
            TriggerRow(classpath, stored_trigger_kwargs(json.loads(kwargs))) for classpath, kwargs in rows
        ]
        # Newer Airflow (3.3) records every task state change in the audit log ("running" first).
        (state_changes,) = db.execute(
            "SELECT count(*) FROM log WHERE dag_id = ? AND event = 'running'", (result.dag_id,)
        ).fetchone()
        if state_changes:
            rows = db.execute(
                "SELECT task_id FROM log WHERE dag_id = ? AND event = 'deferred' ORDER BY id",
                (result.dag_id,),
            )
        else:
            # Airflow 3.0's execution API records no task state change in the audit log; a task
            # instance that deferred keeps the id of the trigger it deferred to (in deferral order).
            rows = db.execute(
                "SELECT task_id FROM task_instance WHERE dag_id = ? AND trigger_id IS NOT NULL"
                " ORDER BY trigger_id",
                (result.dag_id,),
            )
        result.deferred_tasks = [task_id for (task_id,) in rows]


def run_dag(
    template_db: Path,
    home: Path,
    dag_id: str,
    *,
    connection: Mapping[str, Any],
    conf: Mapping[str, Any] | None = None,
    deferrable: bool = False,
    timeout: float = RUN_TIMEOUT,
) -> DagRunResult:
    """Run ``airflow dags test DAG_ID`` in a fresh ``home`` holding a copy of ``template_db``.

    ``connection`` becomes ``AIRFLOW_CONN_PORTKEY_DEFAULT``; ``deferrable`` sets Airflow's
    ``[operators] default_deferrable``, the switch example DAG 1 reads at parse time.
    """
    home.mkdir(parents=True)
    database = home / DB_NAME
    shutil.copyfile(template_db, database)
    env = airflow_env(
        home,
        extra={
            "AIRFLOW_CONN_PORTKEY_DEFAULT": json.dumps(dict(connection)),
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": str(deferrable),
        },
    )
    argv = airflow_argv("dags", "test", dag_id)
    if conf is not None:
        argv += ["--conf", json.dumps(dict(conf))]
    started = time.monotonic()
    returncode, output = _run(argv, env, timeout, home / "dags-test.log")
    result = DagRunResult(dag_id, returncode, output, home / "dags-test.log", time.monotonic() - started)
    _read_database(database, result)
    return result
