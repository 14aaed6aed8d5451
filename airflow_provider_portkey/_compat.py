"""The one module that knows where Airflow keeps things; everything else imports from here.

Each name comes from the Task SDK first, so a current Airflow never touches a deprecated path (nor
warns); only where that import fails does it fall back to where older Airflow 3 releases keep it:

- ``BaseHook``: ``airflow.sdk`` (3.1+), else ``airflow.hooks.base`` (3.0);
- ``conf``: ``airflow.sdk`` (3.2+), else ``airflow.configuration`` (3.0, 3.1);
- the exceptions: ``airflow.sdk.exceptions`` (3.2+), else ``airflow.exceptions`` (3.0, 3.1), all from
  the same module so that the task runner of that release catches them;
- ``amask_secret``, masking from an event loop (a trigger): ``airflow.sdk.log`` where Airflow has
  it, else the sync ``mask_secret`` in a worker thread. On 3.0 the sync one, called on the
  triggerer's loop, asks its supervisor through ``async_to_sync`` and raises ("You cannot use
  AsyncToSync in the same thread as an async event loop"); from a ``sync_to_async`` thread the
  request runs on that loop instead, as ``airflow.providers.common.compat.connection`` does there.

The rest is in the same place on every supported Airflow (3.0.6 and later). Type checkers see the
``airflow.sdk`` names only. ``BaseTrigger`` and ``TriggerEvent`` are imported on first use (see
``__getattr__``): a DAG file that imports a sensor never needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import (
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    Connection,
    Context,
    PokeReturnValue,
)

# Public since Airflow 3.0.6 (the floor in pyproject.toml); earlier 3.0 releases only had a private path.
from airflow.sdk.log import mask_secret

if TYPE_CHECKING:
    from airflow.sdk import BaseHook, conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
    from airflow.sdk.log import amask_secret
    from airflow.triggers.base import BaseTrigger, TriggerEvent
else:
    try:
        from airflow.sdk import BaseHook
    except ImportError:  # Airflow 3.0
        from airflow.hooks.base import BaseHook

    try:
        from airflow.sdk import conf
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.configuration import conf

    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # Airflow 3.0 has only the sync mask_secret, which must not run on the loop

        async def amask_secret(secret: object, name: str | None = None) -> None:
            from asgiref.sync import sync_to_async

            await sync_to_async(mask_secret)(secret, name)

    try:
        from airflow.sdk.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowSensorTimeout,
            AirflowSkipException,
            TaskDeferred,
        )
    except ImportError:  # Airflow 3.0, 3.1: their task runner catches these from airflow.exceptions
        from airflow.exceptions import (
            AirflowException,
            AirflowFailException,
            AirflowSensorTimeout,
            AirflowSkipException,
            TaskDeferred,
        )

if not TYPE_CHECKING:  # type checkers see the import above

    def __getattr__(name: str) -> object:
        """
        ``BaseTrigger`` and ``TriggerEvent``, imported on first use.

        Triggers are not part of the Task SDK yet; ``airflow.triggers.base`` is their non-deprecated
        home on every Airflow 3. Only the triggers use them, so a DAG file that imports a sensor does
        not load that module (and what it pulls in) at parse time.
        """
        if name in ("BaseTrigger", "TriggerEvent"):
            from airflow.triggers import base

            return getattr(base, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Connection",
    "Context",
    "PokeReturnValue",
    "TaskDeferred",
    "TriggerEvent",
    "amask_secret",
    "conf",
    "mask_secret",
]
