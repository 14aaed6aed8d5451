"""What ``airflow.providers.common.compat`` does not cover yet: the version switches of this package.

``amask_secret`` registers a secret for redaction from an event loop (a trigger). Airflow 3.3 has
it in ``airflow.sdk.log``; 3.0 has only the sync ``mask_secret``, which, called on the triggerer's
loop, asks its supervisor through ``async_to_sync`` and raises ("You cannot use AsyncToSync in the
same thread as an async event loop"). From a ``sync_to_async`` worker thread the request runs on
that loop instead, as ``airflow.providers.common.compat.connection`` does on those versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

#: Whether a sensor may start on the triggerer and end there (``start_from_trigger``). Airflow 3.3
#: renders templated fields on the triggerer before ``run`` and routes a ``TaskFailedEvent`` through
#: the task's retries; 3.0 does neither (the kwargs stay unrendered templates, a failure is final),
#: and 3.1/3.2 disabled starting from the triggerer in the scheduler.
ZERO_WORKER_WAITS = AIRFLOW_V_3_3_PLUS

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


__all__ = ["ZERO_WORKER_WAITS", "amask_secret"]
