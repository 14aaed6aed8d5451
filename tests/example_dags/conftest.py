"""Fixtures for the example-DAG tests: one migrated SQLite metadata database, copied per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.example_dags.airflow_cli import DAG_RUN_TIMINGS, migrate_template


@pytest.fixture(scope="session")
def airflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``airflow db migrate`` once per session; each ``airflow dags test`` run gets a copy."""
    return migrate_template(tmp_path_factory.mktemp("airflow-template"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say how long the ``airflow dags test`` runs took (they dominate this folder's time)."""
    for line in config.stash.get(DAG_RUN_TIMINGS, []):
        terminalreporter.write_line(line)
