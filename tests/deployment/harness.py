"""A real Airflow deployment for the deployment tier: its processes, health, REST API, database, logs.

:class:`Deployment` runs ``airflow db migrate``, then ``api-server``, ``scheduler`` (LocalExecutor),
``dag-processor`` and any number of ``triggerer`` processes, each its own process group with its
output in its own file, all with one ``AIRFLOW_HOME`` and this interpreter's virtualenv. It only
ever signals the process groups it started (by PID), and :meth:`Deployment.stop` ends them all,
also when a test failed. Health and DAG runs go through the REST API; outcomes are read from the
metadata database (SQLite or PostgreSQL, through SQLAlchemy).

The child environment is the parent's minus every ``AIRFLOW*`` variable, plus the settings below:
short heartbeats and loop intervals, so that the tier stays fast on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from tests.support.ports import LOOPBACK, free_port

T = TypeVar("T")

#: Seconds without a heartbeat after which a triggerer's triggers go to another one.
TRIGGERER_HEALTH_CHECK_THRESHOLD = 8
#: Triggers one triggerer runs at most: two triggerers must share a big mapped DAG run.
TRIGGERER_CAPACITY = 25
#: How long a SQLite connection waits for another process's write lock (Python's default: 5 s).
#: Several triggerers, a scheduler, workers and the API server share one file; on a loaded 2-core
#: machine a burst of task ends held the lock past 5 s, and Airflow's triggerer exits on "database
#: is locked". Set through Airflow's own ``[database] sql_alchemy_connect_args``.
SQLITE_BUSY_TIMEOUT = 30
LOG_TAIL_CHARS = 6_000


#: What a task runner logs once per start in the worker task log (the triggerer writes its lines to
#: separate ``.trigger.`` files): counting it counts worker launches.
TASK_RUNNER_START_MARK = '"DAG bundles loaded'


class DeploymentError(RuntimeError):
    """A component failed to start, died, or a condition was not met in time."""


@dataclass
class Component:
    """One process group the deployment started (``pid`` is also its group id)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.alive():
            os.killpg(self.pid, signum)


@dataclass(frozen=True)
class TaskInstanceRow:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    end_date: datetime | None
    trigger_id: int | None
    trigger_timeout: datetime | None


@dataclass(frozen=True)
class TriggerRow:
    id: int
    classpath: str
    kwargs: dict[str, Any]
    kwargs_text: str
    triggerer_id: int | None


@dataclass
class Deployment:
    """Airflow in ``root``: ``root/home`` is ``AIRFLOW_HOME``, ``root/components`` the process logs."""

    root: Path
    db_url: str
    dag_files: list[Path]
    connection: Mapping[str, Any]
    api_port: int = field(default_factory=free_port)
    components: dict[str, Component] = field(default_factory=dict)
    #: Components killed on purpose (their exit is not a failure).
    killed: set[str] = field(default_factory=set)
    #: Size of each component's log when :meth:`stop` began: what they logged while in service.
    log_sizes_at_stop: dict[str, int] = field(default_factory=dict)
    _engine: Engine | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def component_logs(self) -> Path:
        return self.root / "components"

    @property
    def sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    def __post_init__(self) -> None:
        (self.home / "dags").mkdir(parents=True, exist_ok=True)
        # Airflow puts $AIRFLOW_HOME/config on sys.path before it connects to its database.
        (self.home / "config").mkdir(exist_ok=True)
        (self.home / "config" / "tier_database.py").write_text(
            f"CONNECT_ARGS = {{'timeout': {SQLITE_BUSY_TIMEOUT}}}\n"
        )
        self.component_logs.mkdir(parents=True, exist_ok=True)
        for dag_file in self.dag_files:
            (self.home / "dags" / dag_file.name).write_bytes(dag_file.read_bytes())
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
        settings: dict[str, dict[str, object]] = {
            "core": {
                "dags_folder": self.home / "dags",
                "executor": "LocalExecutor",
                "load_examples": False,
                "dags_are_paused_at_creation": False,
                "parallelism": 8,
                "max_active_tasks_per_dag": 64,
                "simple_auth_manager_all_admins": True,
                "execution_api_server_url": f"{self.api_url}/execution/",
            },
            "database": {
                "sql_alchemy_conn": self.db_url,
                **({"sql_alchemy_connect_args": "tier_database.CONNECT_ARGS"} if self.sqlite else {}),
            },
            "api": {"base_url": self.api_url, "host": LOOPBACK, "port": self.api_port, "workers": 1},
            "api_auth": {"jwt_secret": secrets.token_urlsafe(64)},
            # A loaded 2-core machine answers slowly: a timed-out call retried after it took effect fails.
            "workers": {"execution_api_timeout": 60},
            "logging": {"base_log_folder": self.home / "logs", "logging_level": "INFO"},
            "scheduler": {"scheduler_heartbeat_sec": 1, "scheduler_idle_sleep_time": 0.5},
            "dag_processor": {
                "refresh_interval": 5,
                "parsing_processes": 1,
                "min_file_process_interval": 600,
            },
            "triggerer": {
                "job_heartbeat_sec": 1,
                "triggerer_health_check_threshold": TRIGGERER_HEALTH_CHECK_THRESHOLD,
                "capacity": TRIGGERER_CAPACITY,
            },
        }
        for section, options in settings.items():
            for option, value in options.items():
                env[f"AIRFLOW__{section.upper()}__{option.upper()}"] = str(value)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW_CONN_PORTKEY_DEFAULT": json.dumps(dict(self.connection)),
                "PYTHONUNBUFFERED": "1",
                "COLUMNS": "200",
            }
        )
        return env

    # -- processes ----------------------------------------------------------------------------------

    def _popen(self, name: str, args: Iterable[str]) -> Component:
        log_path = self.component_logs / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Component(name, process, log_path)

    def migrate(self, timeout: float = 180.0) -> None:
        component = self._popen("db-migrate", ["db", "migrate"])
        try:
            returncode = component.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            component.signal_group(signal.SIGKILL)
            component.process.wait()
            raise DeploymentError(f"airflow db migrate took over {timeout:g} s\n{self.describe()}") from None
        if returncode != 0:
            raise DeploymentError(f"airflow db migrate exited {returncode}:\n{_tail(component.log_path)}")

    def start(self, name: str, *args: str) -> Component:
        """Start ``airflow ARGS`` as component ``name`` (which must not be running)."""
        running = self.components.get(name)
        if running is not None and running.alive():
            raise DeploymentError(f"{name} is already running (pid {running.pid})")
        component = self._popen(name, args)
        self.components[name] = component
        return component

    def start_triggerer(self, name: str) -> Component:
        return self.start(name, "triggerer", "--skip-serve-logs")

    def start_all(self) -> None:
        self.start("api-server", "api-server", "--port", str(self.api_port), "--host", LOOPBACK)
        self.start("scheduler", "scheduler", "--skip-serve-logs")
        self.start("dag-processor", "dag-processor")
        self.start_triggerer("triggerer-1")

    def kill(self, name: str) -> None:
        """SIGKILL a component's whole process group and reap it (a lost machine, not a shutdown)."""
        component = self.components[name]
        self.killed.add(name)
        component.signal_group(signal.SIGKILL)
        component.process.wait()

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every component still running, SIGKILL what is left after ``grace`` seconds."""
        for name, component in self.components.items():
            self.log_sizes_at_stop[name] = component.log_path.stat().st_size
        running = [component for component in self.components.values() if component.alive()]
        for component in running:
            component.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for component in running:
            try:
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                component.signal_group(signal.SIGKILL)
                component.process.wait()
        # A group's children may outlive its leader (LocalExecutor workers, the trigger runner).
        for component in self.components.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(component.pid, signal.SIGKILL)
        if self._engine is not None:
            self._engine.dispose()

    def check_alive(self) -> None:
        dead = [
            f"{c.name} (exit {c.process.returncode})"
            for c in self.components.values()
            if c.name not in self.killed and not c.alive()
        ]
        if dead:
            raise DeploymentError(f"components died: {', '.join(dead)}\n{self.describe()}")

    # -- waiting ------------------------------------------------------------------------------------

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
        """Poll ``probe`` until it returns something other than ``None``/``False``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            result = probe()
            if result is not None and result is not False:
                return result
            if time.monotonic() >= deadline:
                raise DeploymentError(f"not within {timeout:g} s: {what}\n{self.describe()}")
            time.sleep(interval)

    def wait_healthy(self, timeout: float = 120.0) -> dict[str, Any]:
        """Until the API server says the database, scheduler, triggerer and DAG processor are healthy."""

        def healthy() -> dict[str, Any] | None:
            try:
                health: dict[str, Any] = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return None
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return health if all((health.get(p) or {}).get("status") == "healthy" for p in parts) else None

        return self.wait_for("every component healthy", healthy, timeout)

    # -- REST API -----------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.api_url}/api/v2/{path}", json=body, timeout=30)
        if response.status_code >= 400:
            raise DeploymentError(f"{method} {path}: HTTP {response.status_code} {response.text[:2000]}")
        return response.json()

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, timeout: float = 90.0) -> str:
        """Trigger a run of ``dag_id`` once the DAG processor has stored it; return the run id."""

        def known() -> bool:
            return httpx.get(f"{self.api_url}/api/v2/dags/{dag_id}", timeout=10).status_code == 200

        self.wait_for(f"DAG {dag_id} parsed", known, timeout, interval=0.5)
        run = self.api("POST", f"dags/{dag_id}/dagRuns", {"logical_date": None, "conf": dict(conf or {})})
        return str(run["dag_run_id"])

    # -- metadata database --------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            args = {"timeout": SQLITE_BUSY_TIMEOUT} if self.sqlite else {}
            self._engine = sqlalchemy.create_engine(self.db_url, connect_args=args, poolclass=NullPool)
        return self._engine

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(sqlalchemy.text(sql), params))

    def execute(self, sql: str, **params: Any) -> None:
        """Run one statement and commit it."""
        with self.engine.begin() as connection:
            connection.execute(sqlalchemy.text(sql), params)

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
        return str(rows[0][0]) if rows else None

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], TaskInstanceRow]:
        rows = self.query(
            "SELECT task_id, map_index, state, try_number, end_date, trigger_id, trigger_timeout"
            " FROM task_instance WHERE dag_id = :d AND run_id = :r",
            d=dag_id,
            r=run_id,
        )
        return {
            (row[0], row[1]): TaskInstanceRow(
                row[0], row[1], row[2], row[3], _datetime(row[4]), row[5], _datetime(row[6])
            )
            for row in rows
        }

    def xcoms(self, dag_id: str, run_id: str) -> dict[tuple[str, int, str], Any]:
        rows = self.query(
            "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = :d AND run_id = :r",
            d=dag_id,
            r=run_id,
        )
        decode = _sqlite_json if self.sqlite else _same
        return {(row[0], row[1], row[2]): decode(row[3]) for row in rows}

    def triggers(self) -> dict[int, TriggerRow]:
        from tests.support.airflow_compat import stored_trigger_kwargs

        rows = self.query("SELECT id, classpath, kwargs, triggerer_id FROM trigger")
        found = {}
        for row in rows:
            text = row[2] if isinstance(row[2], str) else json.dumps(row[2])
            if not text.startswith("{"):
                text = self._decrypt(text)
            found[row[0]] = TriggerRow(row[0], row[1], stored_trigger_kwargs(json.loads(text)), text, row[3])
        return found

    def _decrypt(self, token: str) -> str:
        """
        Kwargs the scheduler stored itself (a task started on the triggerer, Airflow >= 3.3) are
        encrypted with the deployment's Fernet key (written to ``airflow.cfg`` at first start);
        those a worker's deferral stored are plain JSON.
        """
        from configparser import RawConfigParser

        from cryptography.fernet import Fernet

        config = RawConfigParser()
        config.read(self.home / "airflow.cfg")
        return Fernet(config.get("core", "fernet_key").encode()).decrypt(token.encode()).decode()

    def triggerer_jobs(self) -> dict[int, tuple[str | None, datetime | None]]:
        """Triggerer job id -> (state, latest heartbeat)."""
        rows = self.query("SELECT id, state, latest_heartbeat FROM job WHERE job_type = 'TriggererJob'")
        return {row[0]: (row[1], _datetime(row[2])) for row in rows}

    # -- logs ---------------------------------------------------------------------------------------

    def component_log(self, name: str) -> str:
        """What the component logged until :meth:`stop` (its shutdown is not under test)."""
        data = self.components[name].log_path.read_bytes()
        return data[: self.log_sizes_at_stop.get(name, len(data))].decode(errors="replace")

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder /= f"map_index={map_index}"
        path = folder / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def describe(self) -> str:
        """The end of every component's log, for failure messages (the files stay in ``root``)."""
        parts = [f"deployment in {self.root}"]
        for path in sorted(self.component_logs.glob("*.log")):
            parts.append(f"--- {path.name} (last {LOG_TAIL_CHARS} chars) ---\n{_tail(path)}")
        return "\n".join(parts)


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return text[-LOG_TAIL_CHARS:]


def _same(value: Any) -> Any:
    """A JSON column's value from PostgreSQL, which its driver has already decoded."""
    return value


def _sqlite_json(value: Any) -> Any:
    """A JSON column's value from SQLite: the JSON text, or a number (the column has numeric affinity)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _datetime(value: Any) -> datetime | None:
    """A timestamp column as an aware UTC datetime (SQLite hands back text, PostgreSQL datetimes)."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
