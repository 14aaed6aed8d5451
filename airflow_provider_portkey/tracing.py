"""Tie Portkey's logs to Airflow: a trace id per task try, task metadata, and a "Portkey logs" link.

Every request a task makes carries ``x-portkey-trace-id`` derived from its task instance, so all of
them (the operator's, each poke, the trigger's polls after a deferral) form one trace in Portkey,
and ``x-portkey-metadata`` with the dag id, task id and run id, so Portkey's log filters find them
by Airflow names. The task's page in Airflow gets a "Portkey logs" button opening that trace.

Precedence of the trace id: a ``trace_id`` fixed on the connection (all its requests, one trace),
else the operator's ``trace_id`` argument, else the derived one. Metadata: the connection's keys win
over the task's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import BaseOperatorLink

from airflow_provider_portkey.settings import METADATA_VALUE_MAX, validate_hook_params

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

    from airflow_provider_portkey.hooks.portkey import PortkeyHook

#: Longest trace id this provider derives. Portkey documents no limit for ``x-portkey-trace-id``;
#: 100 characters keep it well inside header and log-filter limits while readable.
TRACE_ID_MAX = 100
#: Length of the digest that replaces what is cut from a long or unsafe value (keeps it unique).
_DIGEST_CHARS = 16
#: Characters kept as they are in a trace id; anything else becomes ``_`` (and adds a digest).
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:+/[]@~")
#: Where Portkey's web app lists the logs of one trace (``ui_url`` + this + the quoted trace id).
LOGS_PATH = "/logs?trace_id="


def bounded(text: str, limit: int, *, original: str | None = None) -> str:
    """
    ``text`` if it fits in ``limit`` characters (and is the original), else its start plus a digest.

    The digest is of ``original`` (default ``text``): two values that differ only after the cut,
    or only in characters that were replaced, still differ, and the same value always gives the
    same result, so everything a task try sends lands in one trace.
    """
    source = text if original is None else original
    if len(text) <= limit and text == source:
        return text
    digest = hashlib.sha256(source.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{text[: limit - _DIGEST_CHARS - 1]}~{digest}"


def task_trace_id(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """
    A readable trace id naming the task try: ``airflow/<dag>/<run>/<task>[<map index>]/try-<n>``.

    Run ids are free text (an API-triggered run may hold spaces or non-ASCII): unsafe characters
    become ``_`` and a digest of the exact original is appended, so distinct runs never share a
    trace. The result fits in :data:`TRACE_ID_MAX` and is printable ASCII, as a header must be.
    """
    mapped = f"[{map_index}]" if map_index >= 0 else ""
    raw = f"airflow/{dag_id}/{run_id}/{task_id}{mapped}/try-{try_number}"
    readable = "".join(ch if ch in _SAFE else "_" for ch in raw)
    return bounded(readable, TRACE_ID_MAX, original=raw)


def _text_attr(obj: object, name: str) -> str | None:
    value = getattr(obj, name, None)
    return value if isinstance(value, str) and value else None


def _int_attr(obj: object, name: str, default: int) -> int:
    value = getattr(obj, name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True)
class TaskTrace:
    """
    What a task try sends to Portkey to be found again: its trace id and its metadata.

    Plain strings only, so a sensor can hand both to its trigger as kwargs and the triggerer's
    polls land in the same trace as the task's own requests.
    """

    trace_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_context(cls, context: Context | dict[str, Any], trace_id: str | None = None) -> TaskTrace:
        """
        The trace of the running task try; ``trace_id`` (the user's) replaces the derived id.

        Outside a real task run (a bare context without a task instance's ids) there is nothing
        to derive from: only the user's ``trace_id`` is used, and no metadata.
        """
        ti = context.get("ti") or context.get("task_instance")
        dag_id, run_id, task_id = (_text_attr(ti, name) for name in ("dag_id", "run_id", "task_id"))
        if dag_id is None or run_id is None or task_id is None:
            return cls(trace_id or None, {})
        map_index = _int_attr(ti, "map_index", -1)
        derived = task_trace_id(dag_id, run_id, task_id, map_index, _int_attr(ti, "try_number", 1))
        metadata = {"dag_id": dag_id, "task_id": task_id, "run_id": run_id}
        if map_index >= 0:
            metadata["map_index"] = str(map_index)
        # Portkey keeps metadata values of at most 128 characters: cut (with a digest) rather than lose them.
        return cls(
            trace_id or derived, {key: bounded(value, METADATA_VALUE_MAX) for key, value in metadata.items()}
        )


def logs_url(ui_url: str, trace_id: str) -> str:
    """The Portkey app's log view filtered to one trace."""
    return f"{ui_url.rstrip('/')}{LOGS_PATH}{quote(trace_id, safe='')}"


class PortkeyLogsLink(BaseOperatorLink):
    """
    "Portkey logs": the task try's requests in Portkey's log view.

    Airflow 3's API server renders links without running any task code, from the XCom stored
    under :attr:`xcom_key`. The task pushes the URL there when it starts (it needs the connection
    for the app URL and a fixed trace id, which only the worker reads), and ``get_link``, which the
    task runner calls when the task finishes, returns that same value so it is kept.

    The operator that ran in this process knows what it published (possibly nothing: a bad
    connection fails the task before), so ``get_link`` answers from it; only a task resumed in a
    new process (after a deferral) reads the XCom back. Asking for an XCom that was never pushed
    would make Airflow log a second, misleading error ("XCom not found") under the real one.
    """

    name = "Portkey logs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        published = getattr(operator, "portkey_logs_url", _NOT_STARTED)
        if published is not _NOT_STARTED:
            return published if isinstance(published, str) else ""
        from airflow.providers.common.compat.sdk import XCom

        value = XCom.get_value(ti_key=ti_key, key=self.xcom_key)
        return value if isinstance(value, str) else ""


#: ``portkey_logs_url`` of an operator that has not started in this process.
_NOT_STARTED: Any = object()


class PortkeyTaskMixin:
    """
    What every Portkey operator and sensor shares: a hook traced to the task try, and the logs link.

    Mixed into ``BaseOperator`` subclasses, which take ``portkey_conn_id``, ``trace_id`` and
    ``hook_params`` in their own signature (Airflow checks mapped and default arguments against the
    operator classes' ``__init__``) and hand them to :meth:`set_portkey_options`.
    """

    operator_extra_links: Collection[BaseOperatorLink] = (PortkeyLogsLink(),)

    portkey_conn_id: str
    trace_id: str | None
    #: Keyword arguments for the hook (``max_retries``, ``max_retry_wait``), as the task was given them.
    hook_params: dict[str, Any]
    #: The current try's trace, set by :meth:`traced_hook` (a sensor hands it to its trigger).
    task_trace: TaskTrace = TaskTrace()
    #: The "Portkey logs" URL this try published (``None``: it failed before it could).
    portkey_logs_url: str | None

    def set_portkey_options(
        self, portkey_conn_id: str, trace_id: str | None, hook_params: Mapping[str, Any] | None
    ) -> None:
        """Keep the options every Portkey task takes; a bad ``hook_params`` fails here, at parse time."""
        self.portkey_conn_id = portkey_conn_id
        self.trace_id = trace_id
        self.hook_params = validate_hook_params(hook_params)

    @cached_property
    def hook(self) -> PortkeyHook:
        """This task's hook: its connection and ``hook_params``, and once it runs, the try's trace."""
        return self.portkey_hook()

    def traced_hook(self, context: Context) -> PortkeyHook:
        """
        A hook for this task try (trace id and metadata on every request), after publishing the link.

        Call it once per ``execute``: the link is pushed to XCom each time, which also restores it
        after a reschedule (Airflow clears a task's XComs when it starts again, not on resuming).
        """

        self.task_trace = TaskTrace.from_context(context, self.trace_id)
        self.portkey_logs_url = None  # started: the link says what this try published, if anything
        self.__dict__.pop("hook", None)  # one made before this try began lacks its trace
        hook = self.hook
        trace_id = hook.settings.effective_trace_id(hook.trace_id)
        if trace_id is not None:
            self.portkey_logs_url = logs_url(hook.settings.ui_url, trace_id)
            context["ti"].xcom_push(key=PortkeyLogsLink().xcom_key, value=self.portkey_logs_url)
        return hook

    def portkey_hook(self) -> PortkeyHook:
        """A new hook with the trace of the current try (:attr:`task_trace`)."""
        from airflow_provider_portkey.hooks.portkey import PortkeyHook

        return PortkeyHook(
            self.portkey_conn_id,
            trace_id=self.task_trace.trace_id,
            metadata=self.task_trace.metadata,
            **self.hook_params,
        )
