"""What ``airflow.providers.common.compat`` does not cover yet: the version switches of this package.

``amask_secret`` registers a secret for redaction from an event loop (a trigger). Airflow 3.3 has
it in ``airflow.sdk.log``; 3.0 has only the sync ``mask_secret``, which, called on the triggerer's
loop, asks its supervisor through ``async_to_sync`` and raises ("You cannot use AsyncToSync in the
same thread as an async event loop"). From a ``sync_to_async`` worker thread the request runs on
that loop instead, as ``airflow.providers.common.compat.connection`` does on those versions.

``HITLOperator`` is the standard provider's human-in-the-loop base (Airflow 3.1+). Where it is
missing (Airflow 3.0, or a standard provider without it) a stand-in takes its place whose
constructor fails with :data:`HITL_REQUIREMENT`, so a DAG using an approval task fails at parse
time, saying what to install, while the rest of the provider keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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


#: What an approval task needs, for the error raised where it is missing.
HITL_REQUIREMENT = (
    "needs Airflow >= 3.1 with apache-airflow-providers-standard that has human-in-the-loop "
    "operators (airflow.providers.standard.operators.hitl)"
)

if TYPE_CHECKING:
    from airflow.providers.standard.operators.hitl import HITLOperator
else:
    from airflow.providers.common.compat.sdk import AirflowOptionalProviderFeatureException, BaseOperator

    try:
        from airflow.providers.standard.operators.hitl import HITLOperator
    except (ImportError, AirflowOptionalProviderFeatureException) as _missing:
        _HITL_MISSING = str(_missing)

        class HITLOperator(BaseOperator):
            """Stands in for the human-in-the-loop base where Airflow has none: building a task fails."""

            def __init__(self, **kwargs: object) -> None:
                from airflow import __version__ as airflow_version

                from airflow_provider_portkey.errors import PortkeyConfigurationError

                raise PortkeyConfigurationError(
                    f"{type(self).__name__} {HITL_REQUIREMENT}; this is Airflow {airflow_version} "
                    f"({_HITL_MISSING})"
                )


__all__ = ["HITL_REQUIREMENT", "HITLOperator", "amask_secret"]
