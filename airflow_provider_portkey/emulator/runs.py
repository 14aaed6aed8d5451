"""Agent runs: scripts chosen by assistant id, and the run that walks one, creating steps as it goes.

A run shows one stage of its script at a time. It moves on per GET of the run ("poll", the default)
or per `seconds_per_status` of the injectable clock ("time"), except that `requires_action` waits for
submit_tool_outputs and a cancel replaces the rest of the script with `cancelling`, `cancelled`.
Entering a stage may create a step (message_creation, or the tool_calls step of `requires_action`)
and close the open ones, so the steps a client lists are those the run created so far, in order.

Built-in scripts (any other assistant id runs like `asst_demo`):

    asst_demo        queued -> in_progress (message_creation step) -> completed (step completed)
    asst_tools       queued -> in_progress -> requires_action (tool_calls step: get_weather,
                     {"city":"Paris"}, output null) -- submit_tool_outputs --> queued ->
                     in_progress (tool_calls step completed with the output; message_creation
                     step) -> completed
    asst_fails       queued -> in_progress (message_creation step) -> failed (step failed;
                     last_error server_error on both)
    asst_slow        queued -> in_progress x SLOW_POLLS (message_creation step) -> completed
    asst_incomplete  queued -> in_progress (message_creation step) -> incomplete
                     (incomplete_details.reason max_completion_tokens; step completed)
    asst_expires     queued -> in_progress (message_creation step) -> expired (step expired)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from airflow_provider_portkey.emulator.objects import (
    DEFAULT_LAST_ERROR,
    EXPIRY_SECONDS,
    RUN_STATUSES,
    RUN_TERMINAL_STATUSES,
    USAGE,
    RunStatus,
    message_creation_details,
    message_object,
    stable_id,
    step_object,
)

Advance = Literal["poll", "time"]

ASST_DEMO = "asst_demo"
ASST_TOOLS = "asst_tools"
ASST_FAILS = "asst_fails"
ASST_SLOW = "asst_slow"
ASST_INCOMPLETE = "asst_incomplete"
ASST_EXPIRES = "asst_expires"
SLOW_POLLS = 1000  # asst_slow shows in_progress this many times: plenty for cancel tests

# A run's metadata may pick its own advance ("poll" | "time") and seconds per stage (a string, as
# metadata values are strings); they stay in the metadata the run echoes, like any user metadata.
ADVANCE_KEY = "emulator_advance"
SECONDS_KEY = "emulator_seconds_per_status"

# What a run whose request did not set them shows (values as the live API fills them in).
RUN_DEFAULTS: dict[str, Any] = {
    "model": "gpt-4o",
    "instructions": "",
    "tools": [],
    "tool_resources": {},
    "metadata": {},
    "temperature": 1.0,
    "top_p": 1.0,
    "reasoning_effort": None,
    "max_completion_tokens": None,
    "max_prompt_tokens": None,
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "response_format": "auto",
    "tool_choice": "auto",
    "parallel_tool_calls": True,
}
_SETTINGS_BEFORE_USAGE = (
    "model",
    "instructions",
    "tools",
    "tool_resources",
    "metadata",
    "temperature",
    "top_p",
    "reasoning_effort",
    "max_completion_tokens",
    "max_prompt_tokens",
    "truncation_strategy",
)
_SETTINGS_AFTER_USAGE = ("response_format", "tool_choice", "parallel_tool_calls")
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# A run's step closes with the status of the terminal stage it ends in; `incomplete` has no step
# counterpart, and the step did produce its (cut short) output, so it counts as completed.
_STEP_END = {
    "completed": "completed",
    "incomplete": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "expired",
}


# A message is as finished as the step that writes it: a step that ended otherwise leaves it incomplete.
_MESSAGE_STATUS = {
    "completed": "completed",
    "failed": "incomplete",
    "cancelled": "incomplete",
    "expired": "incomplete",
}


class RunError(Exception):
    """A request the upstream would refuse: rendered as its `{"error": {...}}` body by the handlers."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class FunctionCall:
    """A function tool call the model asks for in `requires_action`."""

    name: str
    arguments: str


WEATHER_CALL = FunctionCall("get_weather", '{"city":"Paris"}')


@dataclass(frozen=True)
class Stage:
    """One status of a run script.

    `repeat`: how many polls (or clock intervals) the stage lasts. `message`: entering it creates a
    message_creation step. `close`: entering it completes the open steps (terminal stages always
    close them, with their own status). A `requires_action` stage creates a tool_calls step with
    `tool_calls` and waits for their outputs.
    """

    status: RunStatus
    repeat: int = 1
    message: bool = False
    close: bool = False
    tool_calls: tuple[FunctionCall, ...] = (WEATHER_CALL,)


def validate_script(stages: Iterable[Stage]) -> tuple[Stage, ...]:
    """Check a script can be walked: it ends in (and only in) a terminal status."""
    script = tuple(stages)
    if not script:
        raise ValueError("a run script needs at least one stage")
    for index, stage in enumerate(script):
        if stage.status not in RUN_STATUSES:
            raise ValueError(f"unknown run status {stage.status!r}; expected one of {list(RUN_STATUSES)}")
        if stage.repeat < 1:
            raise ValueError("repeat must be at least 1")
        terminal = stage.status in RUN_TERMINAL_STATUSES
        if terminal != (index == len(script) - 1):
            raise ValueError("a run script must end in a terminal status, and only there")
        if stage.status == "requires_action" and not stage.tool_calls:
            raise ValueError("a requires_action stage needs at least one tool call")
    return script


def parse_stage(raw: Mapping[str, Any]) -> Stage:
    """A stage from its JSON form (control API); tool_calls: [{name, arguments (a str or object)}]."""
    options = dict(raw)
    calls = options.pop("tool_calls", None)
    if calls is not None:
        shapes_ok = isinstance(calls, list) and all(
            isinstance(call, dict) and set(call) == {"name", "arguments"} for call in calls
        )
        if not shapes_ok:
            raise ValueError("tool_calls must be a list of {name, arguments} objects")
        options["tool_calls"] = tuple(
            FunctionCall(
                str(call["name"]),
                call["arguments"] if isinstance(call["arguments"], str) else json.dumps(call["arguments"]),
            )
            for call in calls
        )
    return Stage(**options)


BUILTIN_SCRIPTS: dict[str, tuple[Stage, ...]] = {
    ASST_DEMO: (Stage("queued"), Stage("in_progress", message=True), Stage("completed")),
    ASST_TOOLS: (
        Stage("queued"),
        Stage("in_progress"),
        Stage("requires_action"),
        Stage("queued"),
        Stage("in_progress", close=True, message=True),
        Stage("completed"),
    ),
    ASST_FAILS: (Stage("queued"), Stage("in_progress", message=True), Stage("failed")),
    ASST_SLOW: (Stage("queued"), Stage("in_progress", repeat=SLOW_POLLS, message=True), Stage("completed")),
    ASST_INCOMPLETE: (Stage("queued"), Stage("in_progress", message=True), Stage("incomplete")),
    ASST_EXPIRES: (Stage("queued"), Stage("in_progress", message=True), Stage("expired")),
}
DEFAULT_SCRIPT = BUILTIN_SCRIPTS[ASST_DEMO]


@dataclass
class RunStep:
    """A step an agent run created; its status is set by the run, not by polls of the step."""

    id: str
    thread_id: str
    run_id: str
    assistant_id: str
    type: str
    created_at: int
    step_details: dict[str, Any]
    status: str = "in_progress"
    ended_at: int | None = None

    def awaiting_outputs(self) -> bool:
        calls = self.step_details.get("tool_calls", [])
        return any(call["function"]["output"] is None for call in calls)

    def render(self) -> dict[str, Any]:
        return step_object(
            id=self.id,
            thread_id=self.thread_id,
            run_id=self.run_id,
            assistant_id=self.assistant_id,
            type=self.type,
            status=self.status,
            created_at=self.created_at,
            ended_at=self.ended_at,
            last_error=dict(DEFAULT_LAST_ERROR),
            step_details=self.step_details,
        )


@dataclass
class AgentRun:
    """A run walking its script. Not thread-safe: EmulatorState calls it under its lock.

    Timestamps are `created_at` (wall seconds at creation) plus clock seconds since `started`, so
    an injected clock moves them too and step `created_at` values grow with the run.
    """

    id: str
    thread_id: str
    assistant_id: str
    stages: list[Stage]
    advance: Advance
    seconds_per_status: float
    settings: dict[str, Any]
    created_at: int
    started: float
    index: int = 0
    visits: int = 0
    entered: float = 0.0
    steps: list[RunStep] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    started_at: int | None = None
    ended_at: int | None = None

    def __post_init__(self) -> None:
        self.entered = self.started

    @property
    def status(self) -> str:
        return self.stages[self.index].status

    @property
    def active(self) -> bool:
        return self.status not in RUN_TERMINAL_STATUSES

    def advance_to(self, now: float, *, poll: bool) -> None:
        """Move along the script: one stage per `repeat` polls, or per `repeat` intervals of time.

        A poll-advanced run only moves on a GET of the run (`poll`); a time-advanced run catches up
        on every look at it, entering each stage at the time it was due so timestamps stay exact.
        """
        if self.advance == "poll":
            if poll and self._can_move():
                self.visits += 1
                if self.visits >= self.stages[self.index].repeat:
                    self._enter(now)
            return
        while self._can_move():
            due = self.entered + self.stages[self.index].repeat * self.seconds_per_status
            if now < due:
                break
            self._enter(due)

    def cancel(self, now: float) -> None:
        """`cancelling` now, `cancelled` one stage later (the next poll, or one interval)."""
        if not self.active or self.status == "cancelling":
            raise RunError(400, f"Cannot cancel run with status '{self.status}'.")
        self.stages[self.index + 1 :] = [Stage("cancelling"), Stage("cancelled")]
        self._enter(now)

    def submit_tool_outputs(self, now: float, outputs: list[tuple[str, str]]) -> None:
        """Write each output into its tool call and continue after `requires_action`."""
        if self.status != "requires_action":
            raise RunError(400, f'Runs in status "{self.status}" do not accept tool outputs.')
        expected = [call["id"] for call in self.pending]
        given = [call_id for call_id, _ in outputs]
        for index, call_id in enumerate(given):
            if call_id not in expected:
                message = f"Invalid tool_call_id: '{call_id}'. No tool call with this id is awaiting output."
                raise RunError(400, message, param=f"tool_outputs[{index}].tool_call_id")
        if set(expected) - set(given):
            message = f"Expected tool outputs for call_ids {expected}, got {given}."
            raise RunError(400, message, param="tool_outputs")
        answers = dict(outputs)
        for step in self.steps:
            for call in step.step_details.get("tool_calls", []):
                if call["id"] in answers:
                    call["function"]["output"] = answers[call["id"]]
        self._enter(now)

    def step(self, step_id: str) -> RunStep | None:
        return next((step for step in self.steps if step.id == step_id), None)

    def render(self) -> dict[str, Any]:
        """The run as the live API returns it (field order too); a deep copy."""
        status = self.status
        terminal = status in RUN_TERMINAL_STATUSES
        required_action = None
        if status == "requires_action":
            calls = [{"id": c["id"], "type": "function", "function": c["function"]} for c in self.pending]
            required_action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": calls}}
        body: dict[str, Any] = {
            "id": self.id,
            "object": "thread.run",
            "created_at": self.created_at,
            "assistant_id": self.assistant_id,
            "thread_id": self.thread_id,
            "status": status,
            "started_at": self.started_at,
            "expires_at": None if terminal and status != "expired" else self.created_at + EXPIRY_SECONDS,
            "cancelled_at": self.ended_at if status == "cancelled" else None,
            "failed_at": self.ended_at if status == "failed" else None,
            "completed_at": self.ended_at if status == "completed" else None,
            "required_action": required_action,
            "last_error": dict(DEFAULT_LAST_ERROR) if status == "failed" else None,
        }
        body.update({name: self.settings[name] for name in _SETTINGS_BEFORE_USAGE})
        body["incomplete_details"] = {"reason": "max_completion_tokens"} if status == "incomplete" else None
        body["usage"] = dict(USAGE) if terminal else None
        body.update({name: self.settings[name] for name in _SETTINGS_AFTER_USAGE})
        return copy.deepcopy(body)

    def messages(self) -> list[dict[str, Any]]:
        """The assistant messages this run's message_creation steps wrote (text once completed)."""
        replies = []
        for step in self.steps:
            if step.type != "message_creation":
                continue
            status = _MESSAGE_STATUS.get(step.status, "in_progress")
            text = f"Emulated reply of {self.assistant_id} (run {self.id})."
            replies.append(
                message_object(
                    id=step.step_details["message_creation"]["message_id"],
                    thread_id=self.thread_id,
                    role="assistant",
                    content=text if status == "completed" else [],
                    created_at=step.created_at,
                    status=status,
                    assistant_id=self.assistant_id,
                    run_id=self.id,
                )
            )
        return replies

    def summary(self) -> dict[str, Any]:
        """What the control API lists: enough to count runs and tell them apart."""
        return {
            "id": self.id,
            "thread_id": self.thread_id,
            "assistant_id": self.assistant_id,
            "status": self.status,
            "steps": len(self.steps),
        }

    def _can_move(self) -> bool:
        return self.index < len(self.stages) - 1 and self.status != "requires_action"

    def _wall(self, now: float) -> int:
        return self.created_at + int(now - self.started)

    def _enter(self, now: float) -> None:
        """Show the next stage: set timestamps, close open steps, create the stage's step."""
        self.index += 1
        self.visits = 0
        self.entered = now
        stage = self.stages[self.index]
        wall = self._wall(now)
        self.pending = []
        if stage.status == "in_progress" and self.started_at is None:
            self.started_at = wall
        if stage.status in RUN_TERMINAL_STATUSES:
            self.ended_at = wall
            self._close_steps(_STEP_END[stage.status], wall, force=True)
        elif stage.close:
            self._close_steps("completed", wall, force=False)
        if stage.message:
            self._add_step("message_creation", wall, None)
        if stage.status == "requires_action":
            self._add_step("tool_calls", wall, stage.tool_calls)

    def _close_steps(self, status: str, wall: int, *, force: bool) -> None:
        for step in self.steps:
            if step.status == "in_progress" and (force or not step.awaiting_outputs()):
                step.status, step.ended_at = status, wall

    def _add_step(self, type: str, wall: int, calls: tuple[FunctionCall, ...] | None) -> None:
        step_id = stable_id("step_", self.thread_id, self.id, str(len(self.steps)))
        details: dict[str, Any]
        if calls is None:
            details = message_creation_details(self.thread_id, self.id, step_id)
        else:
            tool_calls: list[dict[str, Any]] = []
            self.pending = []
            for position, call in enumerate(calls):
                call_id = stable_id("call_", self.thread_id, self.id, step_id, str(position))
                function = {"name": call.name, "arguments": call.arguments}
                tool_calls.append(
                    {"id": call_id, "type": "function", "function": {**function, "output": None}}
                )
                self.pending.append({"id": call_id, "function": function})
            details = {"type": "tool_calls", "tool_calls": tool_calls}
        # Strictly increasing created_at, so that ordering a run's steps by it is meaningful.
        created_at = max(wall, self.steps[-1].created_at + 1) if self.steps else wall
        self.steps.append(
            RunStep(step_id, self.thread_id, self.id, self.assistant_id, type, created_at, details)
        )


def run_settings(assistant_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a run echoes: the request's, else the defaults (asst_tools offers get_weather)."""
    settings = copy.deepcopy(RUN_DEFAULTS)
    if assistant_id == ASST_TOOLS:
        settings["tools"] = [copy.deepcopy(WEATHER_TOOL)]
    for name, value in request.items():
        if name in settings and value is not None:
            settings[name] = copy.deepcopy(value)
    return settings


def advance_options(
    metadata: Mapping[str, Any], advance: Advance, seconds_per_status: float
) -> tuple[Advance, float]:
    """The run's advance mode: its metadata's choice, else the script's."""
    chosen = metadata.get(ADVANCE_KEY, advance)
    if chosen not in ("poll", "time"):
        message = f"Invalid value: '{chosen}'. Supported values are: 'poll' and 'time'."
        raise RunError(400, message, param=f"metadata.{ADVANCE_KEY}", code="invalid_value")
    raw_seconds = metadata.get(SECONDS_KEY)
    if raw_seconds is None:
        return cast(Advance, chosen), seconds_per_status
    try:
        seconds = float(raw_seconds)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        message = f"Invalid value: '{raw_seconds}'. Expected a positive number of seconds."
        raise RunError(400, message, param=f"metadata.{SECONDS_KEY}", code="invalid_value")
    return cast(Advance, chosen), seconds
