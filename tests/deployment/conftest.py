"""The deployment tier's fixture: one real Airflow deployment per database leg, all scenarios in it.

``tier`` starts the emulator (the Portkey API, with a strict API-key check) and a
:class:`~tests.deployment.harness.Deployment`, runs :func:`~tests.deployment.scenarios.run_scenarios`
once, stops every component (also when something failed) and hands the record to the tests.
The database legs: SQLite on every Airflow the suite runs on, PostgreSQL as well (a throwaway
cluster, see :mod:`tests.deployment.postgres`).
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_portkey.emulator import EmulatorServer
from tests.deployment.harness import Deployment
from tests.deployment.postgres import PostgresCluster, postgres_cluster
from tests.deployment.scenarios import (
    MAPPED_STATUSES,
    StampedState,
    TierRun,
    mapped_latencies,
    request_counts,
    run_scenarios,
)
from tests.support.secrets import API_KEY, PROVIDER_KEY, VIRTUAL_KEY

REPO_ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = [
    *sorted((REPO_ROOT / "tests" / "deployment" / "dags").glob("deploy_*.py")),
    REPO_ROOT / "example_dags" / "portkey_agent_workflow.py",
    REPO_ROOT / "example_dags" / "portkey_background_response.py",
    REPO_ROOT / "example_dags" / "portkey_approve_tool_calls.py",
]
FIGURES = pytest.StashKey[list[str]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.deployment)


def _database_legs() -> list[str]:
    """SQLite on every Airflow; PostgreSQL on the newest (3.3) only, to keep the tier's time budget."""
    from tests.support.airflow_compat import AIRFLOW_VERSION

    return ["sqlite", "postgres"] if AIRFLOW_VERSION.release >= (3, 3) else ["sqlite"]


@pytest.fixture(scope="module", params=_database_legs())
def tier(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TierRun]:
    leg: str = request.param
    root = tmp_path_factory.mktemp(f"deployment-{leg}")
    emulator = EmulatorServer(mode="portkey")
    emulator.state = StampedState(seed=False, api_keys=[API_KEY])
    with contextlib.ExitStack() as stack:
        stack.enter_context(emulator)
        postgres: PostgresCluster | None = (
            stack.enter_context(postgres_cluster()) if leg == "postgres" else None
        )
        connection = {
            "conn_type": "portkey",
            "host": emulator.url,
            "password": API_KEY,
            # All three secrets travel on every request (the emulator routes by the virtual key).
            "extra": {"virtual_key": VIRTUAL_KEY, "provider": "openai", "provider_api_key": PROVIDER_KEY},
        }
        db_url = postgres.url if postgres else f"sqlite:///{root / 'airflow.db'}"
        deployment = Deployment(root=root, db_url=db_url, dag_files=DAG_FILES, connection=connection)
        run = TierRun(deployment, emulator, database_files=_database_files(root, postgres))
        try:
            run_scenarios(run)
        finally:
            deployment.stop()
        _record_figures(request.config, leg, run)
        yield run


def _database_files(root: Path, postgres: PostgresCluster | None) -> tuple[Path, str]:
    """Where the metadata database keeps its bytes: the SQLite file (and journal), or the cluster."""
    return (postgres.data_dir, "**/*") if postgres else (root, "airflow.db*")


def _record_figures(config: pytest.Config, leg: str, run: TierRun) -> None:
    from tests.support.airflow_compat import AIRFLOW_VERSION

    latencies = mapped_latencies(run)
    counts = request_counts(run)
    cancelled = (
        f"{run.cancel_seconds:.1f} s" if run.cancel_seconds is not None else "never (no on_kill before 3.3)"
    )
    config.stash.setdefault(FIGURES, []).append(
        f"deployment tier, Airflow {AIRFLOW_VERSION}, {leg}: scenarios {run.tier_seconds:.0f} s "
        f"(healthy after {run.healthy_seconds:.0f} s); step completed -> task success "
        f"median {statistics.median(latencies):.1f} s, max {max(latencies):.1f} s; "
        f"triggerer SIGKILL -> every wait polled again {run.recovery_seconds:.1f} s "
        f"({run.seconds_down:.1f} s without a triggerer); "
        f"deferred task marked failed -> its run cancelled {cancelled}; "
        f"GETs per mapped step {dict(sorted(counts.items()))} (minimum {len(MAPPED_STATUSES)})"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for line in config.stash.get(FIGURES, []):
        terminalreporter.write_line(line)
