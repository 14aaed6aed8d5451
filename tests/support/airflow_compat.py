"""The one place where the tests import Airflow internals that moved between Airflow 3 releases.

The suite runs on the newest Airflow (3.3) and on the oldest the package supports (3.0.6). Each name
below is imported from where Airflow 3.3 keeps it first; only when that import fails does it fall
back to where Airflow 3.0 keeps it (so the newest Airflow never touches a deprecated path or warns):

- ``DagBag``: ``airflow.dag_processing.dagbag``, else ``airflow.models.dagbag``;
- ``sync_bag_to_db``: a function of ``airflow.dag_processing.dagbag``, else the
  ``DagBag.sync_to_db`` method (wrapped here with the same signature);
- ``redact``: ``airflow.sdk.log``, else ``airflow.sdk.execution_time.secrets_masker``;
- ``reset_secrets_masker``: ``airflow.sdk._shared.secrets_masker``, else
  ``airflow.sdk.execution_time.secrets_masker``;
- ``import_string``: ``airflow.sdk._shared.module_loading``, else ``airflow.utils.module_loading``;
- ``serialize``/``deserialize``: ``airflow.sdk.serde``, else ``airflow.serialization.serde``;
- the exceptions Airflow's own sensor base and task runner raise: ``airflow.sdk.exceptions``, else
  ``airflow.exceptions``; those the provider raises come from ``airflow.providers.common.compat.sdk``,
  its own import, so a test catches the very class the provider (or the task runner) raises;
- ``conf``: ``airflow.sdk``, else ``airflow.configuration``.

Where Airflow's behaviour (not only a path) differs, a helper gives the tests one behaviour:

- ``dag_bag()``: a ``DagBag`` without Airflow's own example DAGs on every release;
- ``reschedule_dates_validated()``: ``dag.test()`` hands a rescheduled sensor a datetime on every
  release, as a real task process gets (a string on 3.0);
- ``stored_trigger_kwargs()``: a trigger row's kwargs, whichever way the release stores them;
- ``task_logs_use_stdlib()``: whether operators, hooks and triggers log through ``logging`` (3.0)
  rather than structlog.

Type checkers see the Airflow 3.3 names only. ``AIRFLOW_VERSION`` is the installed Airflow's version,
for a test whose expectation depends on the release (none needs it today: every difference so far is
handled by trying the new path or feature first).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

from airflow import __version__ as _airflow_version
from airflow.providers.common.compat.sdk import AirflowException, AirflowSensorTimeout
from packaging.version import Version

#: The installed Airflow's version (the pre-release/dev suffix kept, e.g. ``3.0.6``).
AIRFLOW_VERSION = Version(_airflow_version)

if TYPE_CHECKING:
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.sdk import conf
    from airflow.sdk._shared.module_loading import import_string
    from airflow.sdk._shared.secrets_masker import reset_secrets_masker
    from airflow.sdk.exceptions import AirflowRescheduleException, TaskDeferralError
    from airflow.sdk.log import redact
    from airflow.sdk.serde import deserialize, serialize
else:
    try:
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    except ImportError:  # Airflow 3.0
        from airflow.models.dagbag import DagBag

        def sync_bag_to_db(dagbag: DagBag, bundle_name: str, bundle_version: str | None) -> None:
            """
            Save the bag's DAGs to the metadata DB, as the DAG processor does (a method there).

            Airflow 3.0 requires every DAG's ``relative_fileloc``, which its ``DagBag`` sets only for
            the DAGs it loads from a file: a DAG put in with ``bag_dag`` gets it here, the same way.
            """
            for dag in dagbag.dags.values():
                if dag.relative_fileloc is None:
                    dag.relative_fileloc = (
                        str(Path(dag.fileloc).relative_to(dagbag.bundle_path))
                        if dagbag.bundle_path
                        else dag.fileloc
                    )
            dagbag.sync_to_db(bundle_name, bundle_version)

    try:
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.0
        from airflow.configuration import conf

    try:
        from airflow.sdk._shared.module_loading import import_string
    except ImportError:  # Airflow 3.0
        from airflow.utils.module_loading import import_string

    try:
        from airflow.sdk._shared.secrets_masker import reset_secrets_masker
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import reset_secrets_masker

    try:  # raised by Airflow's own sensor base and task runner
        from airflow.sdk.exceptions import AirflowRescheduleException, TaskDeferralError
    except ImportError:  # Airflow 3.0: its task runner raises and catches these from here
        from airflow.exceptions import AirflowRescheduleException, TaskDeferralError

    try:
        from airflow.sdk.log import redact
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import redact

    try:
        from airflow.sdk.serde import deserialize, serialize
    except ImportError:  # Airflow 3.0
        from airflow.serialization.serde import deserialize, serialize


@functools.cache
def task_logs_use_stdlib() -> bool:
    """
    Whether operators, hooks and triggers log through the standard library's ``logging``.

    They do on Airflow 3.0 (a ``logging.Logger`` named ``airflow.task.operators.<class path>``,
    ``airflow.task.hooks.<class path>`` or, for a trigger, its class path); later releases give them
    a structlog logger. Found out from an operator's logger rather than from the version number.
    """
    from airflow.sdk import BaseOperator

    return isinstance(BaseOperator(task_id="log_probe").log, logging.Logger)


@contextmanager
def reschedule_dates_validated() -> Iterator[None]:
    """
    While the block runs, a task run in this process gets its first reschedule date as a datetime.

    Airflow 3.0's API client builds that answer with ``model_construct`` (no validation), so the
    date stays the ISO string of the JSON. A real task process still gets a datetime: the socket
    between supervisor and task validates every answer. ``dag.test()`` passes the answer in memory,
    so on 3.0 a sensor in reschedule mode (Airflow's own ``BaseSensorOperator`` included) would be
    handed a string. This validates the answer as the socket would; where the client already
    validates (3.3), it changes nothing.
    """
    from airflow.sdk.api.client import TaskInstanceOperations
    from airflow.sdk.execution_time.comms import TaskRescheduleStartDate

    original = TaskInstanceOperations.get_reschedule_start_date

    def validated(self: TaskInstanceOperations, *args: Any, **kwargs: Any) -> TaskRescheduleStartDate:
        return TaskRescheduleStartDate(start_date=original(self, *args, **kwargs).start_date)

    with mock.patch.object(TaskInstanceOperations, "get_reschedule_start_date", validated):
        yield


def stored_trigger_kwargs(stored: Any) -> Any:
    """
    The kwargs of a row of the metadata DB's ``trigger`` table (its ``kwargs`` column, JSON-parsed).

    Airflow 3.0 stores them in its serialization envelope (``{"__type": "dict", "__var": {...}}``,
    nested values likewise); later releases store the plain JSON. Either way, the kwargs come back.
    """
    if isinstance(stored, dict) and set(stored) == {"__type", "__var"}:
        from airflow.serialization.serialized_objects import BaseSerialization

        return BaseSerialization.deserialize(stored)
    return stored


def dag_bag(dag_folder: str | Path, **kwargs: Any) -> DagBag:
    """
    A ``DagBag`` of the DAGs in ``dag_folder`` only.

    Airflow 3.0's ``DagBag`` also loads Airflow's own example DAGs unless ``include_examples=False``
    (``[core] load_examples`` defaults to True); 3.3's has no such argument and never loads them.
    """
    if "include_examples" in inspect.signature(DagBag).parameters:
        kwargs.setdefault("include_examples", False)
    return DagBag(dag_folder=dag_folder, **kwargs)


__all__ = [
    "AIRFLOW_VERSION",
    "AirflowException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "DagBag",
    "TaskDeferralError",
    "conf",
    "dag_bag",
    "deserialize",
    "import_string",
    "redact",
    "reschedule_dates_validated",
    "reset_secrets_masker",
    "serialize",
    "stored_trigger_kwargs",
    "sync_bag_to_db",
    "task_logs_use_stdlib",
]
