"""In-memory state of the emulator: threads, runs, scripted steps, faults and the request record.

Everything here is plain data guarded by one lock, because tests mutate the state from their own
thread while the server's event loop thread reads it. A run is either a container of scripted steps
(`add_step`, the seed) or an agent run made by the run endpoints (runs.py), or both.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from airflow_provider_portkey.emulator.background import ResponseStore
from airflow_provider_portkey.emulator.feedback_api import FeedbackStore
from airflow_provider_portkey.emulator.objects import (
    ASSISTANT_ID,
    DEFAULT_LAST_ERROR,
    STEP_TERMINAL_STATUSES,
    message_creation_details,
    message_object,
    stable_id,
    step_object,
    thread_object,
)
from airflow_provider_portkey.emulator.runs import (
    BUILTIN_SCRIPTS,
    DEFAULT_SCRIPT,
    Advance,
    AgentRun,
    RunError,
    Stage,
    advance_options,
    parse_stage,
    run_settings,
    validate_script,
)

# `reset_after` processes the request in full, then resets the connection instead of answering: a
# client that retries the POST blindly creates a duplicate. `status` answers before processing.
FaultKind = Literal[
    "status", "delay", "reset", "reset_after", "truncated", "malformed", "slow_drip", "redirect"
]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
TERMINAL_STATUSES = STEP_TERMINAL_STATUSES
REDIRECT_STATUSES = frozenset({301, 302, 307, 308})

SEED_THREAD_ID = "thread_demo"
SEED_RUN_ID = "run_demo"
STEP_COMPLETES = "step_completes"
STEP_FAILS = "step_fails"
STEP_CANCELLED = "step_cancelled"
STEP_EXPIRED = "step_expired"
STEP_TOOL_CALLS = "step_tool_calls"
STEP_INSTANT = "step_instant"
STEP_MAP_IDS = ("step_map_1", "step_map_2", "step_map_3")
SEED_STEP_IDS = (
    STEP_COMPLETES,
    STEP_FAILS,
    STEP_CANCELLED,
    STEP_EXPIRED,
    STEP_TOOL_CALLS,
    STEP_INSTANT,
    *STEP_MAP_IDS,
)


@dataclass
class ReceivedRequest:
    """One request the emulator received (header names lower-cased; values as sent)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]


@dataclass
class ScriptedStep:
    """A run step whose status walks along `statuses`, per GET ("poll") or per clock time ("time")."""

    thread_id: str
    run_id: str
    id: str
    statuses: tuple[str, ...]
    type: str
    last_error: dict[str, Any] | None
    step_details: dict[str, Any] | None
    advance: Advance
    seconds_per_status: float
    extra_fields: dict[str, Any]
    created_at: int
    started: float
    seq: int
    polls: int = 0
    terminal_offset: float | None = None

    def current_index(self, now: float, *, poll: bool) -> int:
        """Index of the status to show; a poll-advanced step moves one status per retrieve."""
        last = len(self.statuses) - 1
        if self.advance == "time":
            index = min(int((now - self.started) / self.seconds_per_status), last)
        elif poll:
            index = min(self.polls, last)
            self.polls += 1
        else:  # a list call shows what the latest retrieve showed, without advancing
            index = min(max(self.polls - 1, 0), last)
        if index == last and self.terminal_offset is None:
            reached = self.started + last * self.seconds_per_status if self.advance == "time" else now
            self.terminal_offset = reached - self.started
        return index

    def render(self, index: int) -> dict[str, Any]:
        """The step as the live API returns it (see `step_object`), plus any scripted extra fields."""
        status = self.statuses[index]
        body = step_object(
            id=self.id,
            thread_id=self.thread_id,
            run_id=self.run_id,
            assistant_id=ASSISTANT_ID,
            type=self.type,
            status=status,
            created_at=self.created_at,
            ended_at=self.created_at + int(self.terminal_offset or 0),
            last_error=self.last_error,
            step_details=self.step_details or self._default_details(),
        )
        body.update(copy.deepcopy(self.extra_fields))  # callers must not be able to alter the script
        return body

    def _default_details(self) -> dict[str, Any]:
        if self.type == "tool_calls":
            call = {
                "id": stable_id("call_", self.thread_id, self.run_id, self.id),
                "type": "function",
                "function": {
                    "name": "get_current_weather",
                    "arguments": '{"location":"San Francisco, CA","unit":"fahrenheit"}',
                    "output": "70 degrees and sunny.",
                },
            }
            return {"type": "tool_calls", "tool_calls": [call]}
        return message_creation_details(self.thread_id, self.run_id, self.id)


@dataclass
class Run:
    """A run id: its scripted steps, and the agent run if the run endpoints created it."""

    id: str
    thread_id: str
    steps: dict[str, ScriptedStep] = field(default_factory=dict)
    agent: AgentRun | None = None


@dataclass(frozen=True)
class RunScript:
    """The stages runs of one assistant walk, and how they advance unless their metadata says."""

    stages: tuple[Stage, ...]
    advance: Advance = "poll"
    seconds_per_status: float = 1.0


@dataclass
class Thread:
    """A thread: its runs, and the messages users added (assistant messages come from its runs)."""

    id: str
    runs: dict[str, Run] = field(default_factory=dict)
    created_at: int = field(default_factory=lambda: int(time.time()))
    metadata: dict[str, Any] = field(default_factory=dict)
    tool_resources: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def render(self) -> dict[str, Any]:
        return thread_object(
            id=self.id, created_at=self.created_at, metadata=self.metadata, tool_resources=self.tool_resources
        )

    def add_messages(self, messages: Iterable[dict[str, Any]] | None) -> None:
        """Add request-style messages (`role`, `content`, `attachments`, `metadata`) as the API keeps them."""
        for message in messages or ():
            self.messages.append(
                message_object(
                    id="msg_" + secrets.token_hex(12),
                    thread_id=self.id,
                    role=message["role"],
                    content=message["content"],
                    created_at=int(time.time()),
                    attachments=message.get("attachments"),
                    metadata=message.get("metadata"),
                )
            )

    def all_messages(self) -> list[dict[str, Any]]:
        """The users' messages and the runs' assistant messages, oldest first (a deep copy)."""
        replies = [
            reply for run in self.runs.values() if run.agent is not None for reply in run.agent.messages()
        ]
        return sorted(copy.deepcopy(self.messages) + replies, key=lambda message: int(message["created_at"]))


@dataclass
class Fault:
    """A scripted misbehaviour, consumed by the next `remaining` requests whose path matches."""

    kind: FaultKind
    path_contains: str
    remaining: int
    status: int | None
    headers: dict[str, str]
    body: bytes | None
    delay: float
    location: str | None


def _as_bytes(body: str | bytes | dict[str, Any] | list[Any] | None) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class EmulatorState:
    """Thread-safe state shared by the HTTP handlers and the tests that script them.

    `clock` (monotonic seconds) drives time-advanced steps and runs; replace it in tests instead of
    sleeping. `runs_created` counts the runs the run endpoints created since the last reset (so a
    test can tell whether a retried POST made a duplicate).
    `api_keys`, when set, is the set of Portkey API keys accepted in portkey mode.
    The request record keeps the newest `record_limit` requests so long benchmarks stay bounded;
    `request_count` counts all of them.
    """

    def __init__(
        self, *, seed: bool = True, api_keys: Iterable[str] | None = None, record_limit: int = 10_000
    ) -> None:
        self.seed = seed
        self.api_keys: frozenset[str] | None = None if api_keys is None else frozenset(api_keys)
        self.clock: Callable[[], float] = time.monotonic
        self._lock = threading.Lock()
        self._threads: dict[str, Thread] = {}
        self._faults: deque[Fault] = deque()
        self._record: deque[ReceivedRequest] = deque(maxlen=record_limit)
        self._scripts: dict[str, RunScript] = {}
        self._agents: list[AgentRun] = []
        self._seq = 0
        self.request_count = 0
        self.runs_created = 0
        #: Background responses (the Responses API), on the same clock.
        self.responses = ResponseStore(lambda: self.clock())
        #: Feedback accepted by ``POST /v1/feedback`` (portkey mode).
        self.feedback = FeedbackStore()
        self.reset()

    def reset(self) -> None:
        """Forget steps, runs, run scripts, faults and the record; re-seed if this state was seeded."""
        with self._lock:
            self._threads.clear()
            self._faults.clear()
            self._record.clear()
            self._scripts = {name: RunScript(stages) for name, stages in BUILTIN_SCRIPTS.items()}
            self._agents.clear()
            self.request_count = 0
            self.runs_created = 0
        self.responses.reset()
        self.feedback.reset()
        if self.seed:
            self._add_seed()

    def add_step(
        self,
        thread_id: str,
        run_id: str,
        step_id: str,
        *,
        statuses: Iterable[str] = ("in_progress", "completed"),
        type: str = "message_creation",
        last_error: dict[str, Any] | None = None,
        step_details: dict[str, Any] | None = None,
        advance: Advance = "poll",
        seconds_per_status: float = 1.0,
        extra_fields: dict[str, Any] | None = None,
    ) -> None:
        """Script a step (creating its thread and run as needed); re-adding an id replaces it."""
        sequence = tuple(statuses)
        if not sequence:
            raise ValueError("statuses must not be empty")
        if advance not in ("poll", "time"):
            raise ValueError(f"advance must be 'poll' or 'time', not {advance!r}")
        if seconds_per_status <= 0:
            raise ValueError("seconds_per_status must be positive")
        with self._lock:
            thread = self._threads.setdefault(thread_id, Thread(thread_id))
            run = thread.runs.setdefault(run_id, Run(run_id, thread_id))
            self._seq += 1
            run.steps[step_id] = ScriptedStep(
                thread_id=thread_id,
                run_id=run_id,
                id=step_id,
                statuses=sequence,
                type=type,
                last_error=last_error,
                step_details=step_details,
                advance=advance,
                seconds_per_status=seconds_per_status,
                extra_fields=dict(extra_fields or {}),
                created_at=int(time.time()),
                started=self.clock(),
                seq=self._seq,
            )

    def retrieve_step(self, thread_id: str, run_id: str, step_id: str) -> dict[str, Any] | None:
        """Render a step for GET .../steps/{id}, advancing poll-driven steps; None if unknown.

        A step an agent run created shows what the run made of it; looking at it moves only a
        time-advanced run (a poll-advanced run moves on GETs of the run itself).
        """
        with self._lock:
            run = self._run(thread_id, run_id)
            if run is None:
                return None
            now = self.clock()
            step = run.steps.get(step_id)
            if step is not None:
                return step.render(step.current_index(now, poll=True))
            if run.agent is None:
                return None
            run.agent.advance_to(now, poll=False)
            created = run.agent.step(step_id)
            return created.render() if created else None

    def list_steps(self, thread_id: str, run_id: str) -> list[dict[str, Any]] | None:
        """All steps of a run, oldest first, without advancing them; None if the run is unknown."""
        with self._lock:
            run = self._run(thread_id, run_id)
            if run is None:
                return None
            now = self.clock()
            ordered = sorted(run.steps.values(), key=lambda s: (s.created_at, s.seq))
            rendered = [step.render(step.current_index(now, poll=False)) for step in ordered]
            if run.agent is not None:
                run.agent.advance_to(now, poll=False)
                rendered.extend(step.render() for step in run.agent.steps)
            return sorted(rendered, key=lambda step: int(step["created_at"]))  # stable: ties keep order

    def add_run_script(
        self,
        assistant_id: str,
        stages: Iterable[Stage | dict[str, Any]],
        *,
        advance: Advance = "poll",
        seconds_per_status: float = 1.0,
    ) -> None:
        """Make new runs of `assistant_id` walk `stages` (JSON-form stages are accepted too)."""
        if advance not in ("poll", "time"):
            raise ValueError(f"advance must be 'poll' or 'time', not {advance!r}")
        if seconds_per_status <= 0:
            raise ValueError("seconds_per_status must be positive")
        if not isinstance(assistant_id, str) or not assistant_id:
            raise ValueError("assistant_id must be a non-empty string")
        script = validate_script(s if isinstance(s, Stage) else parse_stage(s) for s in stages)
        with self._lock:
            self._scripts[assistant_id] = RunScript(script, advance, seconds_per_status)

    def create_run(self, thread_id: str | None, assistant_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Create a run (on a new thread if `thread_id` is None) and render it, `queued`.

        `request` holds the validated body fields the run echoes (model, metadata, ...). Raises
        RunError for an unknown thread (404) or a thread whose previous run is still active (400).
        """
        with self._lock:
            now = self.clock()
            if thread_id is None:
                thread = self._new_thread(request.get("thread") or {})
            else:
                found = self._threads.get(thread_id)
                if found is None:
                    raise RunError(404, f"No thread found with id '{thread_id}'.")
                thread = found
                for other in thread.runs.values():
                    if other.agent is not None:
                        other.agent.advance_to(now, poll=False)
                        if other.agent.active:
                            raise RunError(400, f"Thread {thread.id} already has an active run {other.id}.")
            thread.add_messages(request.get("additional_messages"))
            script = self._scripts.get(assistant_id) or RunScript(DEFAULT_SCRIPT)
            settings = run_settings(assistant_id, request)
            advance, seconds = advance_options(
                settings["metadata"], script.advance, script.seconds_per_status
            )
            run_id = "run_" + secrets.token_hex(12)
            agent = AgentRun(
                id=run_id,
                thread_id=thread.id,
                assistant_id=assistant_id,
                stages=list(script.stages),
                advance=advance,
                seconds_per_status=seconds,
                settings=settings,
                created_at=int(time.time()),
                started=now,
            )
            thread.runs[run_id] = Run(run_id, thread.id, agent=agent)
            self._agents.append(agent)
            self.runs_created += 1
            return agent.render()

    def create_thread(self, request: dict[str, Any]) -> dict[str, Any]:
        """Create a thread from a validated body (`messages`, `metadata`, `tool_resources`)."""
        with self._lock:
            return self._new_thread(request).render()

    def retrieve_thread(self, thread_id: str) -> dict[str, Any] | None:
        with self._lock:
            thread = self._threads.get(thread_id)
            return thread.render() if thread else None

    def list_messages(self, thread_id: str) -> list[dict[str, Any]] | None:
        """A thread's messages, oldest first (a look, not a poll); None if the thread is unknown."""
        with self._lock:
            thread = self._thread_now(thread_id)
            return None if thread is None else thread.all_messages()

    def list_runs(self, thread_id: str) -> list[dict[str, Any]] | None:
        """A thread's agent runs, oldest first (a look, not a poll); None if the thread is unknown."""
        with self._lock:
            thread = self._thread_now(thread_id)
            if thread is None:
                return None
            return [run.agent.render() for run in thread.runs.values() if run.agent is not None]

    def _thread_now(self, thread_id: str) -> Thread | None:
        """A thread with its time-advanced runs brought up to now (call under the lock)."""
        thread = self._threads.get(thread_id)
        if thread is not None:
            now = self.clock()
            for run in thread.runs.values():
                if run.agent is not None:
                    run.agent.advance_to(now, poll=False)
        return thread

    def _new_thread(self, request: dict[str, Any]) -> Thread:
        thread = Thread(
            "thread_" + secrets.token_hex(12),
            metadata=dict(request.get("metadata") or {}),
            tool_resources=dict(request.get("tool_resources") or {}),
        )
        thread.add_messages(request.get("messages"))
        self._threads[thread.id] = thread
        return thread

    def retrieve_run(self, thread_id: str, run_id: str) -> dict[str, Any] | None:
        """Render a run for GET .../runs/{id}, moving it along; None if there is no such agent run."""
        with self._lock:
            agent = self._agent(thread_id, run_id)
            if agent is None:
                return None
            agent.advance_to(self.clock(), poll=True)
            return agent.render()

    def cancel_run(self, thread_id: str, run_id: str) -> dict[str, Any] | None:
        """Start cancelling a run (RunError 400 if it has ended); None if unknown."""
        return self._change_run(thread_id, run_id, AgentRun.cancel)

    def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: list[tuple[str, str]]
    ) -> dict[str, Any] | None:
        """Answer a run's pending tool calls (RunError 400 if it is not waiting for them); None if unknown."""
        return self._change_run(thread_id, run_id, lambda agent, now: agent.submit_tool_outputs(now, outputs))

    def _change_run(
        self, thread_id: str, run_id: str, change: Callable[[AgentRun, float], None]
    ) -> dict[str, Any] | None:
        """Bring a run up to now (not a poll), apply `change` at now, render it; None if unknown."""
        with self._lock:
            agent = self._agent(thread_id, run_id)
            if agent is None:
                return None
            now = self.clock()
            agent.advance_to(now, poll=False)
            change(agent, now)
            return agent.render()

    @property
    def runs(self) -> list[dict[str, Any]]:
        """A summary of every run the run endpoints created, oldest first (a look, not a poll)."""
        with self._lock:
            now = self.clock()
            for agent in self._agents:
                agent.advance_to(now, poll=False)
            return [agent.summary() for agent in self._agents]

    def add_fault(
        self,
        kind: FaultKind,
        *,
        path_contains: str = "",
        times: int = 1,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: str | bytes | dict[str, Any] | list[Any] | None = None,
        delay: float = 0.0,
        location: str | None = None,
    ) -> None:
        """Queue a fault for the next `times` requests whose path contains `path_contains`."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        if delay < 0:
            raise ValueError("delay must not be negative")
        if kind == "redirect":
            if not location:
                raise ValueError("a redirect fault needs a location")
            if status is not None and status not in REDIRECT_STATUSES:
                raise ValueError(f"redirect status must be one of {sorted(REDIRECT_STATUSES)}")
        fault = Fault(
            kind, path_contains, times, status, dict(headers or {}), _as_bytes(body), delay, location
        )
        with self._lock:
            self._faults.append(fault)

    def take_fault(self, path: str) -> Fault | None:
        """Consume one use of the oldest fault matching `path`, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.path_contains in path:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._record.append(request)
            self.request_count += 1

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of the recorded requests, oldest first."""
        with self._lock:
            return list(self._record)

    def _run(self, thread_id: str, run_id: str) -> Run | None:
        thread = self._threads.get(thread_id)
        return thread.runs.get(run_id) if thread else None

    def _agent(self, thread_id: str, run_id: str) -> AgentRun | None:
        run = self._run(thread_id, run_id)
        return run.agent if run else None

    def _add_seed(self) -> None:
        ip, t, r = "in_progress", SEED_THREAD_ID, SEED_RUN_ID
        self.add_step(t, r, STEP_COMPLETES, statuses=(ip, ip, "completed"))
        self.add_step(t, r, STEP_FAILS, statuses=(ip, "failed"), last_error=dict(DEFAULT_LAST_ERROR))
        self.add_step(t, r, STEP_CANCELLED, statuses=(ip, "cancelled"))
        self.add_step(t, r, STEP_EXPIRED, statuses=(ip, "expired"))
        self.add_step(t, r, STEP_TOOL_CALLS, statuses=(ip, "completed"), type="tool_calls")
        self.add_step(t, r, STEP_INSTANT, statuses=("completed",))
        for polls, step_id in enumerate(STEP_MAP_IDS, start=1):
            self.add_step(t, r, step_id, statuses=(ip,) * polls + ("completed",))
