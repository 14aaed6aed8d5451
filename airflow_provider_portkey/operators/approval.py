"""Let a person approve the tool calls of an agent run before they execute (Airflow's human-in-the-loop).

:class:`ApproveToolCallsOperator` reads a run that ``requires_action``, shows the pending tool calls
(function names, arguments as pretty JSON) on the task's "Required actions" page, and waits for the
answer without a worker slot: on Airflow 3.3 in the ``awaiting_input`` state (no trigger at all),
on 3.1 and 3.2 deferred to the standard provider's ``HITLTrigger``. On the answer it submits the
tool outputs (from a callable run after approval, or typed by the person), or, on a rejection,
submits a refusal as every call's output or cancels the run, and can record the decision in
Portkey as feedback on a trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_portkey._compat import HITL_MISSING, HITL_REQUIREMENT, HITLOperator
from airflow_provider_portkey.connection_fields import DEFAULT_CONN_NAME
from airflow_provider_portkey.errors import PortkeyConfigurationError, PortkeyError
from airflow_provider_portkey.operators.run import checked_answers
from airflow_provider_portkey.tracing import PortkeyTaskMixin

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.models import Run

#: XCom key of the tool calls shown to the person (as the API listed them), pushed before the wait.
TOOL_CALLS_XCOM_KEY = "tool_calls"
#: XCom key of the decision: ``decision``, ``chosen_option``, ``responded_by``, ``tool_call_ids``.
DECISION_XCOM_KEY = "decision"
#: The form fields: the outputs the person types (without a callable) and a free comment.
TOOL_OUTPUTS_PARAM = "tool_outputs"
COMMENT_PARAM = "comment"
DEFAULT_REFUSAL = "The user did not approve this tool call; it was not executed."
#: Portkey's thumbs up / thumbs down values for the feedback of a decision.
FEEDBACK_VALUES = {"approved": 1, "refused": -1, "cancelled": -1}

ToolOutputsCallable = Callable[[list[dict[str, Any]], "Context"], Any]


def _fenced(text: str, language: str) -> str:
    """A Markdown code block that ``text`` (model output, may hold backticks) cannot close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def describe_tool_calls(tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """The tool calls as Markdown for the person: name and id per call, arguments as pretty JSON."""
    parts = [f"The agent asks to run {len(tool_calls)} tool call(s):"]
    for number, call in enumerate(tool_calls, 1):
        function = call.get("function") or {}
        arguments = function.get("arguments", "")
        try:
            shown = _fenced(json.dumps(json.loads(arguments), indent=2, ensure_ascii=False), "json")
        except (TypeError, ValueError):  # not JSON: show exactly what the model sent
            shown = _fenced(str(arguments), "text")
        parts.append(f"**{number}. `{function.get('name', '?')}`** (id `{call.get('id', '?')}`)\n\n{shown}")
    return "\n\n".join(parts)


def _pending_calls(run: Run) -> list[dict[str, Any]]:
    """The calls a ``requires_action`` run waits on, exactly as the API sent them."""
    action = run.to_json().get("required_action") or {}
    calls = (action.get("submit_tool_outputs") or {}).get("tool_calls") or []
    return [dict(call) for call in calls]


class ApproveToolCallsOperator(PortkeyTaskMixin, HITLOperator):
    """
    Ask a person to approve the tool calls of a run that ``requires_action``, then act on the answer.

    The task reads the run, pushes the pending calls under the XCom key ``tool_calls`` and shows
    them on its "Required actions" page (Airflow 3.1+). The person picks one option:

    - ``Approve``: the outputs come from ``tool_outputs_callable(tool_calls, context)`` (run only
      now, after approval; it returns ``{tool_call_id: output}`` or
      ``[{"tool_call_id", "output"}]``), or, without a callable, from the form field
      ``tool_outputs`` (prefilled with one empty output per call id; non-string values are sent
      as JSON). They must answer exactly the pending calls; then they are submitted.
    - ``Reject: tell the agent`` (``"refuse"`` in ``reject_with``): every call gets the person's
      ``comment``, or ``refusal_output`` if they left none, as its output; the agent goes on.
    - ``Reject: cancel the run`` (``"cancel"``): the run is cancelled.

    Before acting, the run is read again: if it no longer waits on exactly the calls shown, the
    task fails and sends nothing. Returns the run JSON after the submit or cancel, and pushes
    ``decision`` to XCom. With ``record_feedback``, the decision goes to Portkey as feedback
    (value 1 for approved, -1 otherwise; metadata: the decision, ``_user``, thread and run ids) on
    ``feedback_trace_id``, by default this task try's trace (where its submit or cancel is logged).
    A failed feedback is logged, not raised: the decision was already applied.

    On an Airflow without human-in-the-loop (3.0) constructing the task fails at DAG parse time,
    naming what is needed. ``response_timeout``, ``defaults``, ``notifiers`` and
    ``assigned_users`` are the standard provider's; ``options`` and ``multiple`` are set by this
    operator, and its form fields ``comment`` and ``tool_outputs`` are added to any ``params``.

    :param thread_id: Thread id (templated).
    :param run_id: Run id (templated).
    :param tool_outputs_callable: Computes the outputs after approval; ``None``: the person types them.
    :param reject_with: The rejections the person is offered: ``"refuse"``, ``"cancel"`` or both.
    :param refusal_output: The output every call gets on ``Reject: tell the agent`` without a
        comment (templated).
    :param subject: The headline of the request (templated).
    :param body: Text shown above the tool calls, Markdown (templated).
    :param record_feedback: Record the decision as Portkey feedback.
    :param feedback_trace_id: The trace the feedback is for (templated); default this task try's.
    :param feedback_weight: The feedback's weight, 0 to 1 (Portkey's default 1.0).
    :param portkey_conn_id: Airflow connection of type ``portkey`` (templated).
    :param trace_id: ``x-portkey-trace-id`` instead of the one derived from the task (templated).
    :param hook_params: Keyword arguments for the hook: ``max_retries``, ``max_retry_wait``.
    """

    APPROVE = "Approve"
    REFUSE = "Reject: tell the agent"
    CANCEL = "Reject: cancel the run"
    _REJECTIONS: ClassVar[dict[str, str]] = {"refuse": REFUSE, "cancel": CANCEL}

    template_fields: Sequence[str] = (
        "subject",
        "body",
        "thread_id",
        "run_id",
        "refusal_output",
        "feedback_trace_id",
        "portkey_conn_id",
        "trace_id",
    )
    ui_color = "#e8f1ff"

    def __init__(
        self,
        *,
        thread_id: str,
        run_id: str,
        tool_outputs_callable: ToolOutputsCallable | None = None,
        reject_with: str | Collection[str] = ("refuse", "cancel"),
        refusal_output: str = DEFAULT_REFUSAL,
        subject: str = "Approve the agent's tool calls",
        body: str | None = None,
        record_feedback: bool = False,
        feedback_trace_id: str | None = None,
        feedback_weight: float | None = None,
        portkey_conn_id: str = DEFAULT_CONN_NAME,
        trace_id: str | None = None,
        hook_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if HITL_MISSING is not None:
            raise PortkeyConfigurationError(f"{type(self).__name__} {HITL_REQUIREMENT}; {HITL_MISSING}")
        for fixed in ("options", "multiple"):
            if fixed in kwargs:
                raise PortkeyConfigurationError(f"{fixed} is set by {type(self).__name__}; do not pass it")
        rejections = [reject_with] if isinstance(reject_with, str) else list(reject_with)
        unknown = [item for item in rejections if item not in self._REJECTIONS]
        if unknown:
            raise PortkeyConfigurationError(
                f"reject_with has {unknown[0]!r}; allowed values are {sorted(self._REJECTIONS)}"
            )
        if tool_outputs_callable is not None and not callable(tool_outputs_callable):
            raise PortkeyConfigurationError(
                f"tool_outputs_callable must be callable, got {tool_outputs_callable!r}"
            )
        from airflow.sdk import Param

        params: dict[str, Any] = {
            COMMENT_PARAM: Param(
                "",
                type="string",
                title="Comment",
                description="Why (optional). On 'Reject: tell the agent' it is the agent's answer.",
            )
        }
        if tool_outputs_callable is None:
            params[TOOL_OUTPUTS_PARAM] = Param(
                {},
                type="object",
                title="Tool outputs",
                description="On 'Approve': the output of each call, by tool call id.",
            )
        super().__init__(
            subject=subject,
            body=body,
            options=[self.APPROVE, *(self._REJECTIONS[item] for item in dict.fromkeys(rejections))],
            multiple=False,
            **kwargs,
        )
        for name, param in params.items():  # after the base kept only the task's own params
            self.params[name] = param
        self.set_portkey_options(portkey_conn_id, trace_id, hook_params)
        self.thread_id = thread_id
        self.run_id = run_id
        self.tool_outputs_callable = tool_outputs_callable
        self.refusal_output = refusal_output
        self.record_feedback = record_feedback
        self.feedback_trace_id = feedback_trace_id
        if feedback_weight is not None:  # checked now, not after a person has answered
            from airflow_provider_portkey.protocol import feedback_request

            feedback_request("-", 0, weight=feedback_weight)
        self.feedback_weight = feedback_weight

    def execute(self, context: Context) -> Any:
        with self.traced_hook(context) as hook:
            run = hook.get_run(self.thread_id, self.run_id)
        if not run.requires_action:
            raise PortkeyError(f"Nothing to approve: {run.describe()}, not requires_action")
        calls = _pending_calls(run)
        context["ti"].xcom_push(key=TOOL_CALLS_XCOM_KEY, value=calls)
        intro = f"{self.body}\n\n" if self.body else ""
        self.body = f"{intro}Run `{run.id}` (thread `{run.thread_id}`). {describe_tool_calls(calls)}"
        if TOOL_OUTPUTS_PARAM in self.params:
            self.params[TOOL_OUTPUTS_PARAM] = {call["id"]: "" for call in calls}
        self.log.info("Asking for approval: %s", run.describe())
        return super().execute(context)  # waits for the answer (deferred or awaiting input)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        answer = super().execute_complete(context, event)
        choice: str = answer["chosen_options"][0]
        params_input: Mapping[str, Any] = answer["params_input"] or {}
        comment = str(params_input.get(COMMENT_PARAM) or "")
        ti = context["ti"]
        shown = ti.xcom_pull(task_ids=self.task_id, key=TOOL_CALLS_XCOM_KEY) or []
        shown_ids = [call["id"] for call in shown]
        with self.traced_hook(context) as hook:
            run = hook.get_run(self.thread_id, self.run_id)
            pending = _pending_calls(run)
            if not run.requires_action or [call["id"] for call in pending] != shown_ids:
                raise PortkeyError(
                    f"{run.describe()} no longer waits on the tool calls shown ({shown_ids}); "
                    f"the decision {choice!r} was not applied"
                )
            if choice == self.APPROVE:
                decision = "approved"
                outputs = self._approved_outputs(pending, params_input, context)
                result = hook.submit_tool_outputs(self.thread_id, self.run_id, checked_answers(run, outputs))
            elif choice == self.REFUSE:
                decision = "refused"
                refusal = comment or self.refusal_output
                result = hook.submit_tool_outputs(
                    self.thread_id, self.run_id, dict.fromkeys(shown_ids, refusal)
                )
            else:
                decision = "cancelled"
                result = hook.cancel_run(self.thread_id, self.run_id)
            responded_by = (answer.get("responded_by_user") or {}).get("name")
            self.log.info("Tool calls %s by %s: %s", decision, responded_by or "default", result.describe())
            if self.record_feedback:
                self._record(hook, decision, responded_by, comment, shown)
        ti.xcom_push(
            key=DECISION_XCOM_KEY,
            value={
                "decision": decision,
                "chosen_option": choice,
                "responded_by": responded_by,
                "tool_call_ids": shown_ids,
            },
        )
        return result.to_json()

    def _approved_outputs(
        self, calls: list[dict[str, Any]], params_input: Mapping[str, Any], context: Context
    ) -> Any:
        if self.tool_outputs_callable is not None:
            return self.tool_outputs_callable(calls, context)
        typed = params_input.get(TOOL_OUTPUTS_PARAM) or {}
        if not isinstance(typed, Mapping):
            raise PortkeyConfigurationError(
                f"the form field {TOOL_OUTPUTS_PARAM} must be an object of tool call id to output, "
                f"got {typed!r}"
            )
        return {key: value if isinstance(value, str) else json.dumps(value) for key, value in typed.items()}

    def _record(
        self,
        hook: PortkeyHook,
        decision: str,
        responded_by: str | None,
        comment: str,
        calls: list[dict[str, Any]],
    ) -> None:
        """Send the decision as Portkey feedback; a failure is logged (the decision already stands)."""
        trace_id = self.feedback_trace_id or hook.settings.effective_trace_id(hook.trace_id)
        if not trace_id:
            self.log.warning("No trace id to record the feedback on: set feedback_trace_id")
            return
        metadata = {
            "decision": decision,
            "thread_id": self.thread_id,
            "agent_run_id": self.run_id,
            "tool_calls": ",".join(str((call.get("function") or {}).get("name")) for call in calls),
        }
        if responded_by:
            metadata["_user"] = responded_by
        if comment:
            metadata["comment"] = comment
        try:
            hook.create_feedback(
                trace_id, FEEDBACK_VALUES[decision], weight=self.feedback_weight, metadata=metadata
            )
        except PortkeyError as error:
            self.log.warning("Could not record the decision as Portkey feedback on %s: %s", trace_id, error)
        else:
            self.log.info("Recorded the decision as Portkey feedback on trace %s", trace_id)
