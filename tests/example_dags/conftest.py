"""The example-DAG tests' report of their ``airflow dags test`` timings (the database: tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.example_dags.airflow_cli import DAG_RUN_TIMINGS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say how long the ``airflow dags test`` runs took (they dominate this folder's time)."""
    for line in config.stash.get(DAG_RUN_TIMINGS, []):
        terminalreporter.write_line(line)
