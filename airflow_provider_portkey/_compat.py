"""What ``airflow.providers.common.compat`` does not cover yet: this package's version switches.

``amask_secret`` registers a secret for redaction from an event loop (a trigger). Airflow 3.3 has
it in ``airflow.sdk.log``; 3.0 has only the sync ``mask_secret``, which, called on the triggerer's
loop, asks its supervisor through ``async_to_sync`` and raises ("You cannot use AsyncToSync in the
same thread as an async event loop"). From a ``sync_to_async`` worker thread the request runs on
that loop instead, as ``airflow.providers.common.compat.connection`` does on those versions.

``TRIGGER_ON_KILL``: whether the triggerer calls ``BaseTrigger.on_kill`` when a person marks,
clears or succeeds a deferred task (Airflow 3.3+); before, a trigger only sees its cancellation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.triggers.base import BaseTrigger

TRIGGER_ON_KILL = hasattr(BaseTrigger, "on_kill")

if TYPE_CHECKING:
    from airflow.sdk.log import amask_secret
else:
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # Airflow 3.0: the sync mask_secret must not run on the loop

        async def amask_secret(secret: object, name: str | None = None) -> None:
            from airflow.providers.common.compat.sdk import mask_secret
            from asgiref.sync import sync_to_async

            await sync_to_async(mask_secret)(secret, name)


__all__ = ["TRIGGER_ON_KILL", "amask_secret"]
