"""Fixtures for the GetRunStepOperator tests (shared helpers live in ``tests.sensors.support``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sensors.dagrun import AirflowRuntime, airflow_runtime
from tests.sensors.support import clock, debug_logs

__all__ = ["airflow", "clock", "debug_logs"]


@pytest.fixture
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowRuntime]:
    """Airflow pointed at the session's throwaway metadata DB for ``dag.test()`` runs (this test only)."""
    yield from airflow_runtime(tmp_path_factory)
