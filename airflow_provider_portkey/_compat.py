"""What ``airflow.providers.common.compat`` does not cover yet: this package's version switches.

``amask_secret`` registers a secret for redaction from an event loop (a trigger). Airflow 3.3 has
it in ``airflow.sdk.log``; 3.0 has only the sync ``mask_secret``, which, called on the triggerer's
loop, asks its supervisor through ``async_to_sync`` and raises ("You cannot use AsyncToSync in the
same thread as an async event loop"). From a ``sync_to_async`` worker thread the request runs on
that loop instead, as ``airflow.providers.common.compat.connection`` does on those versions.

``HITLOperator`` is the standard provider's human-in-the-loop base (Airflow 3.1+). Where it is
missing (Airflow 3.0, or a standard provider without it) it is plain ``BaseOperator`` and
:data:`HITL_MISSING` says why, so the approval operator's constructor can fail with
:data:`HITL_REQUIREMENT` at DAG parse time while the rest of the provider keeps working.
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


#: What an approval task needs, for the error raised where it is missing.
HITL_REQUIREMENT = (
    "needs Airflow >= 3.1 with apache-airflow-providers-standard that has human-in-the-loop "
    "operators (airflow.providers.standard.operators.hitl)"
)
if TYPE_CHECKING:
    from airflow.providers.standard.operators.hitl import HITLOperator

    #: Why this Airflow has no human-in-the-loop base, or ``None`` where it has one.
    HITL_MISSING: str | None
else:

    def __getattr__(name: str) -> object:
        """
        ``HITLOperator`` and ``HITL_MISSING``, loaded on first use: the standard provider's HITL
        module imports Airflow's trigger base and pydantic, which a DAG file that only builds
        sensors (which read :data:`ZERO_WORKER_WAITS`) must not pay for.
        """
        if name not in ("HITLOperator", "HITL_MISSING"):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals().update(_load_hitl())
        return globals()[name]

    def _load_hitl() -> dict[str, object]:
        from airflow import __version__ as airflow_version
        from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_1_PLUS

        # Checked before importing: on 3.0 the standard provider's version shims load Airflow 2's
        # BaseOperator module (slow, and deprecation warnings) before the HITL module refuses.
        missing = f"this is Airflow {airflow_version}"
        if AIRFLOW_V_3_1_PLUS:
            try:
                from airflow.providers.standard.operators.hitl import HITLOperator

                return {"HITLOperator": HITLOperator, "HITL_MISSING": None}
            except ImportError as error:
                missing = f"{missing}: {error}"
        # The class statement still needs a base; the operator's constructor raises first.
        from airflow.providers.common.compat.sdk import BaseOperator

        return {"HITLOperator": BaseOperator, "HITL_MISSING": missing}


__all__ = ["HITL_MISSING", "HITL_REQUIREMENT", "ZERO_WORKER_WAITS", "HITLOperator", "amask_secret"]
