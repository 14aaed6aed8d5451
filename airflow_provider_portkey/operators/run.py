"""Drive an agent run from a DAG: start it, list its steps, answer its tool calls.

:class:`CreateRunOperator` can also wait on the run it started, as
:class:`~airflow_provider_portkey.sensors.run.RunSensor` does, because it is one (see
:mod:`airflow_provider_portkey.durable`); the others each make one change (or one read) and hand
the API's JSON to later tasks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, Context

from airflow_provider_portkey.connection_fields import DEFAULT_CONN_NAME
from airflow_provider_portkey.durable import CreateAndWaitMixin
from airflow_provider_portkey.errors import PortkeyConfigurationError, PortkeyError
from airflow_provider_portkey.sensors.run import RunSensor
from airflow_provider_portkey.statuses import RunStatus, RunStepStatus
from airflow_provider_portkey.tracing import PortkeyTaskMixin
from airflow_provider_portkey.usage import push_run_usage, summed_run_usage

if TYPE_CHECKING:
    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.models import Run

# A DAG file needs the classes and their constructors only: ``execute`` imports the core (request
# building, pydantic models) and the hook when it runs.

#: XCom keys :class:`CreateRunOperator` pushes besides the run JSON, for templating downstream.
THREAD_ID_XCOM_KEY = "thread_id"
RUN_ID_XCOM_KEY = "run_id"
#: XCom key of :class:`ListRunStepsOperator`'s step ids, for templates.
STEP_IDS_XCOM_KEY = "step_ids"
STEP_TYPES = ("message_creation", "tool_calls")


def _choices(name: str, value: str | Collection[str] | None, allowed: Collection[str]) -> frozenset[str]:
    """A filter argument as a set (one string or several), every value checked against ``allowed``."""
    if value is None:
        return frozenset()
    values = [value] if isinstance(value, str) else list(value)
    for item in values:
        if item not in allowed:
            raise PortkeyConfigurationError(f"{name} has {item!r}; allowed values are {sorted(allowed)}")
    return frozenset(values)


def checked_answers(run: Run, tool_outputs: object) -> list[dict[str, str]]:
    """``tool_outputs`` validated, answering exactly the calls ``run`` waits on, or a clear error."""
    from airflow_provider_portkey.protocol import validate_tool_outputs

    outputs = validate_tool_outputs(tool_outputs)
    waiting = {call.id for call in run.required_tool_calls}
    given = {output["tool_call_id"] for output in outputs}
    if given != waiting:
        raise PortkeyConfigurationError(
            f"tool_outputs must answer exactly the calls run {run.id} waits on: "
            f"missing {sorted(waiting - given)}, unexpected {sorted(given - waiting)}"
        )
    return outputs


class CreateRunOperator(CreateAndWaitMixin, RunSensor):
    """
    Start an agent run: on a new thread (``POST /threads/runs``), or on ``thread_id`` if given.

    Returns the run JSON exactly as the API sent it (XCom ``return_value``) and pushes the
    ``thread_id`` and ``run_id`` under their own XCom keys, for templating downstream
    (``"{{ ti.xcom_pull('start', key='run_id') }}"``).

    With ``wait_for_completion=True`` it then waits exactly like ``RunSensor`` (poke or deferrable
    mode, ``fail_on_statuses``, ``stop_on_requires_action``, ``timeout``, ``poke_interval``...) and
    returns the final run JSON, with its token usage under ``usage``. While it waits, its
    ``timeout`` or a kill (also while deferred) cancels the run unless ``cancel_on_kill=False``.
    Reschedule mode is refused: each reschedule would start a new run.

    The create request is retried only when the failure proves no run was created (see
    docs/workflows.md). On Airflow 3.3+ (task state store) a retry of this task waits on the run an
    earlier try started instead of starting another, and returns a run that already ended as it
    ended (``rerun_finished=True`` to start a new one); on older Airflow a retry starts a second
    run: keep ``retries`` at 0 there unless duplicates are harmless.

    :param assistant_id: The assistant to run (templated).
    :param thread_id: An existing thread to run on; ``None`` creates a thread (templated).
    :param thread: The new thread: ``messages``, ``metadata``, ``tool_resources`` (templated).
    :param additional_messages: Messages added to an existing thread before the run (templated).
    :param metadata: The run's metadata, string values (templated).
    :param run_options: Further API fields by their API names, e.g. ``model``, ``instructions``,
        ``tools`` (templated).
    :param wait_for_completion: Wait until the run ends (or ``requires_action``, see
        ``stop_on_requires_action``).
    :param cancel_on_kill: Cancel the started run when the task is killed or times out (default ``True``).
    :param rerun_finished: On a retry, start a new run even if an earlier try's one ended.

    The other arguments (``stop_on_requires_action``, ``fail_on_statuses``, ``deferrable``,
    ``portkey_conn_id``, ``trace_id``, ``hook_params``, ``timeout``, ``poke_interval``...) are
    ``RunSensor``'s.
    """

    template_fields: Sequence[str] = (
        "assistant_id",
        "thread_id",
        "thread",
        "additional_messages",
        "metadata",
        "run_options",
        "portkey_conn_id",
        "trace_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "thread": "json",
        "run_options": "json",
        "metadata": "json",
    }
    state_key = "portkey_run"

    def __init__(
        self,
        *,
        assistant_id: str,
        thread_id: str | None = None,
        thread: Mapping[str, Any] | None = None,
        additional_messages: Sequence[Mapping[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
        run_options: Mapping[str, Any] | None = None,
        wait_for_completion: bool = False,
        cancel_on_kill: bool = True,
        rerun_finished: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(thread_id=thread_id or "", run_id="", **kwargs)
        self.set_create_options(
            wait_for_completion=wait_for_completion,
            cancel_on_kill=cancel_on_kill,
            rerun_finished=rerun_finished,
        )
        self.assistant_id = assistant_id
        self.thread = thread
        self.additional_messages = additional_messages
        self.metadata = metadata
        self.run_options = run_options
        #: ``thread_id`` as the task gave it, once :meth:`adopt` replaced it with a run's thread.
        self.requested_thread_id: str | None = None

    def start(self, hook: PortkeyHook) -> Run:
        if self.run_id:  # an earlier try's run was looked at (rerun_finished): back to what was asked
            self.thread_id = self.requested_thread_id or ""
        if not self.thread_id:  # None (or a template rendered empty): a new thread
            if self.additional_messages is not None:
                raise PortkeyConfigurationError(
                    "additional_messages needs thread_id; a new thread takes thread={'messages': [...]}"
                )
            run = hook.create_thread_and_run(
                self.assistant_id, thread=self.thread, metadata=self.metadata, options=self.run_options
            )
        else:
            if self.thread is not None:
                raise PortkeyConfigurationError(
                    "thread describes a new thread; with thread_id use additional_messages"
                )
            run = hook.create_run(
                self.thread_id,
                self.assistant_id,
                additional_messages=self.additional_messages,
                metadata=self.metadata,
                options=self.run_options,
            )
        self.adopt({THREAD_ID_XCOM_KEY: run.thread_id, RUN_ID_XCOM_KEY: run.id})
        return run

    def started_ids(self) -> dict[str, str]:
        return {THREAD_ID_XCOM_KEY: self.thread_id, RUN_ID_XCOM_KEY: self.run_id} if self.run_id else {}

    def adopt(self, ids: Mapping[str, str]) -> None:
        if not self.run_id:
            self.requested_thread_id = self.thread_id  # as rendered; None: a new thread
        self.thread_id, self.run_id = ids[THREAD_ID_XCOM_KEY], ids[RUN_ID_XCOM_KEY]

    def cancel_remote(self, hook: PortkeyHook) -> str:
        run = hook.get_run(self.thread_id, self.run_id)
        if run.is_terminal or run.status is RunStatus.CANCELLING:
            return f"not cancelling {run.describe()}"
        return f"cancelling {hook.cancel_run(self.thread_id, self.run_id).describe()}"


class ListRunStepsOperator(PortkeyTaskMixin, BaseOperator):
    """
    Return a run's steps as a JSON list (each exactly as the API sent it), for ``.expand()``.

    The run's token usage, summed over all its steps (before filtering), is logged and pushed under
    the XCom key ``usage`` once a step has usage.

    All pages are read; then ``statuses`` and ``step_types`` filter and ``limit`` keeps the first
    ones in ``order``. A mapped task expands over the ids with
    ``.expand(step_id=list_steps.output.map(lambda step: step["id"]))`` (Airflow maps over return
    values only); the ids are also pushed under the XCom key ``step_ids`` for templates.

    :param thread_id: Thread id (templated).
    :param run_id: Run id (templated).
    :param order: ``asc`` (oldest first, the default) or ``desc``.
    :param limit: At most this many steps (after filtering); ``None`` for all.
    :param statuses: Keep only steps in these statuses (e.g. ``"completed"``).
    :param step_types: Keep only these step types: ``message_creation``, ``tool_calls``.
    :param include: ``include[]`` values for the request (templated).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook: ``max_retries``, ``max_retry_wait``.
    """

    template_fields: Sequence[str] = (
        "thread_id",
        "run_id",
        "order",
        "statuses",
        "step_types",
        "include",
        "portkey_conn_id",
        "trace_id",
    )
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        order: str = "asc",
        limit: int | None = None,
        statuses: str | Collection[str] | None = None,
        step_types: str | Collection[str] | None = None,
        include: Sequence[str] | None = None,
        portkey_conn_id: str = DEFAULT_CONN_NAME,
        trace_id: str | None = None,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_portkey_options(portkey_conn_id, trace_id, hook_params)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise PortkeyConfigurationError(f"limit must be a whole number >= 1 or None, got {limit!r}")
        self.thread_id = thread_id
        self.run_id = run_id
        self.order = order
        self.limit = limit
        self.statuses = statuses
        self.step_types = step_types
        self.include = include

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_provider_portkey.protocol import validate_include

        # Checked before any request: templated filters are only known now.
        statuses = _choices("statuses", self.statuses, [status.value for status in RunStepStatus])
        step_types = _choices("step_types", self.step_types, STEP_TYPES)
        include = validate_include(self.include)
        with self.traced_hook(context) as hook:
            steps = hook.list_run_steps(self.thread_id, self.run_id, order=self.order, include=include)
        kept = [
            step.to_json()
            for step in steps
            if (not statuses or str(step.status) in statuses) and (not step_types or step.type in step_types)
        ][: self.limit]
        self.log.info(
            "Run %s has %d steps; returning %d: %s",
            self.run_id,
            len(steps),
            len(kept),
            [s["id"] for s in kept],
        )
        context["ti"].xcom_push(key=STEP_IDS_XCOM_KEY, value=[step["id"] for step in kept])
        usage = summed_run_usage(step.to_json().get("usage") for step in steps)
        push_run_usage(context["ti"], self.log, f"run {self.run_id} (its {len(steps)} steps)", usage)
        return kept


class SubmitToolOutputsOperator(PortkeyTaskMixin, BaseOperator):
    """
    Answer the tool calls of a run that ``requires_action``, with outputs computed upstream.

    ``tool_outputs`` is a list of ``{"tool_call_id", "output"}`` or a mapping ``{tool_call_id:
    output}``, typically an upstream task's return value (an ``XComArg`` or a template rendered
    with ``render_template_as_native_obj``). Outputs must be strings. Before sending, the run is
    read: it must be ``requires_action``, and the outputs must answer exactly the calls it waits
    on; otherwise the task fails naming the difference, and nothing is sent. Returns the run JSON.

    :param thread_id: Thread id (templated).
    :param run_id: Run id (templated).
    :param tool_outputs: The outputs (templated).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook: ``max_retries``, ``max_retry_wait``.
    """

    template_fields: Sequence[str] = ("thread_id", "run_id", "tool_outputs", "portkey_conn_id", "trace_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"tool_outputs": "json"}
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        tool_outputs: Any,
        portkey_conn_id: str = DEFAULT_CONN_NAME,
        trace_id: str | None = None,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.set_portkey_options(portkey_conn_id, trace_id, hook_params)
        self.thread_id = thread_id
        self.run_id = run_id
        self.tool_outputs = tool_outputs

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_portkey.protocol import validate_tool_outputs

        validate_tool_outputs(self.tool_outputs)  # a bad value fails before any request
        with self.traced_hook(context) as hook:
            run = hook.get_run(self.thread_id, self.run_id)
            if not run.requires_action:
                raise PortkeyError(f"Cannot submit tool outputs: {run.describe()}, not requires_action")
            outputs = checked_answers(run, self.tool_outputs)
            resumed = hook.submit_tool_outputs(self.thread_id, self.run_id, outputs)
        self.log.info("Submitted %d tool outputs: %s", len(outputs), resumed.describe())
        return resumed.to_json()
