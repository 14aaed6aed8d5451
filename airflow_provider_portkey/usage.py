"""Token usage of a run: where it is read from, and how it reaches the task log and XCom."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

#: XCom key of an object's token usage (a run's, a response's), as the API sent it.
USAGE_XCOM_KEY = "usage"
_RUN_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


class _Log(Protocol):
    def info(self, event: Any, *args: Any, **kw: Any) -> Any: ...


class _PushesXCom(Protocol):
    def xcom_push(self, key: str, value: Any) -> None: ...


def summed_run_usage(usages: Iterable[Mapping[str, Any] | None]) -> dict[str, int] | None:
    """
    A run's usage from its steps' (``None`` while a step runs): each token count summed.

    ``None`` when no step has usage yet; a count no step reports is left out.
    """
    present = [usage for usage in usages if usage]
    if not present:
        return None
    return {
        field: sum(int(usage[field]) for usage in present if usage.get(field) is not None)
        for field in _RUN_USAGE_FIELDS
        if any(usage.get(field) is not None for usage in present)
    }


def push_run_usage(ti: _PushesXCom, log: _Log, subject: str, usage: Mapping[str, Any] | None) -> None:
    """
    Log a run's token usage and push it under ``usage``.

    Nothing is pushed without usage (a run still going, or failed before any): pulling the key gives
    ``None`` all the same, and Airflow 3.0 refuses to store a ``None`` XCom.
    """
    if not usage:
        return
    counts = ", ".join(f"{field.removesuffix('_tokens')} {usage.get(field)}" for field in _RUN_USAGE_FIELDS)
    log.info("Token usage of %s: %s", subject, counts)
    ti.xcom_push(key=USAGE_XCOM_KEY, value=dict(usage))
