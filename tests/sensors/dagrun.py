"""Run DAGs for real with ``dag.test()`` on a throwaway metadata database, one per test session.

``dag.test()`` runs every task in this process through Airflow's task runner: templates render,
XComs are pushed and pulled, sensors reschedule and deferred tasks run their trigger inline, all
against the SQLite database this module creates under pytest's temporary directory. The test
process may already have imported Airflow (configured for ``~/airflow``), so the database is
switched at runtime, and only for the tests that use the ``airflow`` fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.airflow_compat import DagBag, reschedule_dates_validated, sync_bag_to_db

_runtime: AirflowRuntime | None = None


@dataclass
class DagRunResult:
    """What a ``dag.test()`` run left behind: the run's state, each task's state and XComs."""

    state: str
    task_states: dict[str, str | None]
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)
    rendered: dict[str, dict[str, Any]] = field(default_factory=dict)

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        return self.xcoms[(task_id, key)]


class AirflowRuntime:
    """
    A migrated SQLite metadata DB and an empty dags folder, made active only while a test uses it.

    Activation points Airflow's settings (environment and ORM) at this database; deactivation
    restores what the process had before, so tests that do not ask for it never see it.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.dags_folder = home / "dags"
        self.env = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        }
        self._saved_env: dict[str, str | None] = {}

    def create(self) -> None:
        """Create the database (Airflow's ``initdb``: the ORM schema, stamped as migrated)."""
        from airflow.utils import db

        self.dags_folder.mkdir(parents=True, exist_ok=True)
        with self.active():
            db.initdb()

    @contextmanager
    def active(self) -> Iterator[AirflowRuntime]:
        from airflow import settings

        self._saved_env = {name: os.environ.get(name) for name in self.env}
        os.environ.update(self.env)
        settings.configure_vars()
        settings.reconfigure_orm()
        try:
            yield self
        finally:
            settings.dispose_orm(do_log=False)
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            settings.configure_vars()
            settings.configure_orm()

    def run(self, dag: Any, **kwargs: Any) -> DagRunResult:
        """Register ``dag`` (as the DAG processor would) and run it once with ``dag.test()``."""
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rtif
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        DagBundlesManager().sync_bundles_to_db()
        bag = DagBag(dag_folder=str(self.dags_folder), collect_dags=False)
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        with reschedule_dates_validated():
            dag_run = dag.test(**kwargs)
        with create_session() as session:
            tis = dag_run.get_task_instances(session=session)
            rows = session.scalars(
                select(XComModel).where(XComModel.dag_id == dag.dag_id, XComModel.run_id == dag_run.run_id)
            ).all()
            xcoms = {(row.task_id, row.key): XComModel.deserialize_value(row) for row in rows}
            rendered = session.scalars(
                select(Rtif).where(Rtif.dag_id == dag.dag_id, Rtif.run_id == dag_run.run_id)
            ).all()
            return DagRunResult(
                state=str(dag_run.state),
                task_states={ti.task_id: None if ti.state is None else str(ti.state) for ti in tis},
                xcoms=xcoms,
                rendered={row.task_id: dict(row.rendered_fields) for row in rendered},
            )


def airflow_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowRuntime]:
    """
    Body of the function-scoped ``airflow`` fixture: the session's database, active for one test.

    The database is created on first use and shared by every folder that asks (each conftest
    declares its own fixture, so the cache lives here).
    """
    global _runtime
    if _runtime is None:
        runtime = AirflowRuntime(tmp_path_factory.mktemp("airflow_home"))
        runtime.create()
        _runtime = runtime
    with _runtime.active() as runtime:
        yield runtime
