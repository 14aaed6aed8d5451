"""The demo: run example DAG 1 (``portkey_wait_and_branch``) under Airflow against the local emulator.

What it does, all on this machine and with nothing left running afterwards:

1. makes a temporary ``AIRFLOW_HOME`` with a SQLite database (``airflow db migrate``);
2. starts the Portkey emulator (``python -m airflow_provider_portkey.emulator``) on a free
   loopback port and points ``AIRFLOW_CONN_PORTKEY_DEFAULT`` at it;
3. runs ``airflow dags test portkey_wait_and_branch`` once per step id (by default a step that
   completes, then one that fails, to show both branches);
4. prints a short summary per run from Airflow's database (each task's final state, the step's
   final status, the branch taken and what the report task returned) and the path of the full
   Airflow log;
5. stops the emulator and any Airflow process still running, also on failure or Ctrl-C.

Exit status: 0 when every DAG run succeeded, 1 when one failed, 2 when the demo itself could not
run. Usage: ``bash scripts/demo.sh [--deferrable] [--step STEP_ID ...]`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = ROOT / "example_dags"
DAG_ID = "portkey_wait_and_branch"
THREAD_ID = "thread_demo"
RUN_ID = "run_demo"
DEFAULT_STEPS = ("step_completes", "step_fails")
EMULATOR_START_TIMEOUT = 30.0
MIGRATE_TIMEOUT = 180.0
RUN_TIMEOUT = 300.0
STOP_TIMEOUT = 10.0
# Fake keys: the emulator accepts any Portkey API key and virtual key.
DEMO_API_KEY = "pk-demo-api-key"
DEMO_VIRTUAL_KEY = "vk-demo-virtual-key"
# The last line of a Python traceback, e.g. "airflow_provider_portkey.errors.PortkeyNotFoundError: ...".
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Timeout): .*)$", re.MULTILINE
)
TASK_ORDER = ("wait_for_step", "branch_on_status", "report_output", "report_failure")


class DemoError(RuntimeError):
    """The demo could not run (as opposed to a DAG run that failed)."""


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.sh",
        description="Run example DAG 1 under Airflow against the local Portkey emulator.",
    )
    parser.add_argument(
        "--step",
        dest="steps",
        action="append",
        metavar="STEP_ID",
        help=f"a run step of the emulator to wait on (repeatable; default: {' and '.join(DEFAULT_STEPS)})",
    )
    parser.add_argument(
        "--deferrable",
        action="store_true",
        help="wait on the triggerer (AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=True) instead of poking",
    )
    return parser.parse_args(argv)


def _terminate(process: subprocess.Popen[Any], *, group: bool) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; ``group`` signals the child's whole session."""
    if process.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        try:
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


def _base_env(home: Path) -> dict[str, str]:
    """This environment minus any Airflow settings of the user's own, plus the demo's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextmanager
def emulator() -> Iterator[str]:
    """Start the emulator on a free port in its own session; yield its URL; always stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_portkey.emulator", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        yield _read_emulator_url(process, process.stdout)
    finally:
        _terminate(process, group=True)
        if process.stdout is not None:
            process.stdout.close()


def _read_emulator_url(process: subprocess.Popen[str], stdout: IO[str]) -> str:
    """Wait (bounded) for the one line the emulator prints once it accepts connections."""
    prefix = "portkey emulator listening on "
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    seen: list[str] = []
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if not selector.select(timeout=remaining):
                break
            line = stdout.readline()
            if not line:  # EOF: it is exiting
                with suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_TIMEOUT)
                break
            seen.append(line)
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    raise DemoError(
        f"the emulator did not start within {EMULATOR_START_TIMEOUT:g} s "
        f"(exit code {process.returncode}); it printed:\n{''.join(seen)}"
    )


def _emulator_call(url: str, method: str, path: str) -> Any:
    request = urllib.request.Request(f"{url}/_emulator/{path}", method=method)  # noqa: S310 - loopback http
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _run(argv: list[str], env: Mapping[str, str], log: IO[bytes], timeout: float) -> tuple[int, str]:
    """Run ``argv`` appending its output to ``log``; terminate it on timeout or interruption.

    Returns the exit code and this command's part of the log.
    """
    log.write(f"\n===== {' '.join(argv)}\n".encode())
    log.flush()
    start = log.tell()
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        argv, env=dict(env), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DemoError(f"{' '.join(argv[1:4])} did not finish within {timeout:g} s") from None
    finally:
        _terminate(process, group=False)
    with open(log.name, "rb") as written:
        written.seek(start)
        return returncode, written.read().decode(errors="replace")


@dataclass
class RunSummary:
    step_id: str
    seconds: float
    run_state: str
    tasks: dict[str, str]
    step_status: str | None
    branch: list[str]
    report: Any
    polls: int
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.run_state == "success"


def _last_error(output: str) -> str | None:
    """The last exception line of a run's log, e.g. ``...PortkeyNotFoundError: GET ...: not found``."""
    errors = [match[1] for match in _EXCEPTION_LINE.finditer(output)]
    return errors[-1] if errors else None


def _summarize(database: Path, step_id: str, seconds: float, polls: int, output: str) -> RunSummary:
    with closing(sqlite3.connect(database)) as db:
        row = db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        if row is None:
            raise DemoError(f"airflow dags test left no run of {DAG_ID} in {database}")
        run_id, run_state = row
        tasks = dict(
            db.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
            ).fetchall()
        )
        xcoms = {
            (task_id, key): json.loads(value)
            for task_id, key, value in db.execute(
                "SELECT task_id, key, value FROM xcom WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
            )
        }
    step = xcoms.get(("wait_for_step", "return_value")) or {}
    followed = (xcoms.get(("branch_on_status", "skipmixin_key")) or {}).get("followed", [])
    report = xcoms.get(("report_output", "return_value")) or xcoms.get(("report_failure", "return_value"))
    return RunSummary(
        step_id=step_id,
        seconds=seconds,
        run_state=run_state,
        tasks={task: tasks.get(task) or "none" for task in TASK_ORDER},
        step_status=step.get("status"),
        branch=list(followed),
        report=report,
        polls=polls,
        error=None if run_state == "success" else _last_error(output),
    )


def _print_summary(number: int, summary: RunSummary) -> None:
    print(
        f"\nRun {number}: step {summary.step_id} (thread {THREAD_ID}, run {RUN_ID}): "
        f"DAG run {summary.run_state} in {summary.seconds:.1f} s"
    )
    notes = {
        "wait_for_step": f"step's final status: {summary.step_status or 'unknown'} "
        f"(after {summary.polls} poll{'' if summary.polls == 1 else 's'})",
        "branch_on_status": f"branch taken: {' '.join(summary.branch) or '-'}",
    }
    if summary.report is not None:
        shown = {k: v for k, v in summary.report.items() if k not in ("step_id", "status")}
        reporter = "report_output" if summary.tasks["report_output"] == "success" else "report_failure"
        notes[reporter] = "returned " + json.dumps(shown)
    for task in TASK_ORDER:
        print(f"  {task:<17} {summary.tasks[task]:<16} {notes.get(task, '')}".rstrip())
    if summary.error:
        print(f"  error: {summary.error}")


def demo(args: argparse.Namespace) -> int:
    steps: list[str] = args.steps or list(DEFAULT_STEPS)
    home = Path(tempfile.mkdtemp(prefix="portkey-demo-"))
    log_path = home / "airflow.log"
    env = _base_env(home)
    mode = "deferrable (the trigger runs inline)" if args.deferrable else "poke"
    airflow_version = importlib.metadata.version("apache-airflow")
    print(f"Portkey provider demo: example DAG {DAG_ID} on Airflow {airflow_version}, SQLite, {mode} mode")
    print(f"Airflow home: {home}")
    airflow = [sys.executable, "-m", "airflow"]
    summaries: list[RunSummary] = []
    with log_path.open("ab") as log:
        try:
            if _run([*airflow, "db", "migrate"], env, log, MIGRATE_TIMEOUT)[0] != 0:
                raise DemoError("airflow db migrate failed")
            with emulator() as url:
                print(f"Portkey emulator: {url}")
                env["AIRFLOW_CONN_PORTKEY_DEFAULT"] = json.dumps(
                    {
                        "conn_type": "portkey",
                        "host": url,
                        "password": DEMO_API_KEY,
                        "extra": {"virtual_key": DEMO_VIRTUAL_KEY},
                    }
                )
                env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] = str(args.deferrable)
                for number, step_id in enumerate(steps, start=1):
                    _emulator_call(url, "POST", "reset")  # every step starts over
                    started = time.monotonic()
                    argv = [*airflow, "dags", "test", DAG_ID, "--conf", json.dumps({"step_id": step_id})]
                    _, output = _run(argv, env, log, RUN_TIMEOUT)
                    seconds = time.monotonic() - started
                    polls = sum(
                        1
                        for r in _emulator_call(url, "GET", "requests")["requests"]
                        if r["path"].endswith(f"/steps/{step_id}")
                    )
                    summaries.append(_summarize(home / "airflow.db", step_id, seconds, polls, output))
                    _print_summary(number, summaries[-1])
        except DemoError as error:
            print(f"\ndemo failed: {error}", file=sys.stderr)
            print(f"Airflow's full log: {log_path}", file=sys.stderr)
            return 2
    print(f"\nAirflow's full log: {log_path}")
    failed = [s.step_id for s in summaries if not s.succeeded]
    if failed:
        print(f"DAG run failed for: {', '.join(failed)}")
        return 1
    print("Emulator stopped. All DAG runs succeeded.")
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the children


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # keep our lines in order with stderr's
    return demo(_parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
