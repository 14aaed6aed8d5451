"""Background responses (the Responses API): scripts chosen by model name, and the store that walks them.

A response shows one status of its script at a time and moves on per GET of it ("poll", the
default) or per `seconds_per_status` of the injectable clock ("time"); a cancel ends it `cancelled`
at once. A response created without `background` is answered in its final status. Output items
(reasoning, function calls, message text) appear when the response ends `completed` (all of them)
or `incomplete` (the message cut short); `failed` and `cancelled` responses have none.

Built-in scripts by `model` (any other model runs like `emulator-completes`):

    emulator-completes   queued -> in_progress -> completed   (reasoning + message)
    emulator-tools       queued -> in_progress -> completed   (function_call get_weather)
    emulator-fails       queued -> in_progress -> failed      (error server_error)
    emulator-incomplete  queued -> in_progress -> incomplete  (max_output_tokens; partial message)
    emulator-cancelled   queued -> in_progress -> cancelled
    emulator-slow        queued -> in_progress x SLOW_POLLS -> completed
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_portkey.emulator.objects import DEFAULT_LAST_ERROR, stable_id
from airflow_provider_portkey.emulator.runs import SLOW_POLLS, Advance, RunError, advance_options

RESPONSE_STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled", "incomplete")
RESPONSE_TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "incomplete"})
#: A status of a server's own (not the API's): shown like any other, never final.
_OWN_STATUS = re.compile(r"[a-z][a-z0-9_]{0,63}")
OUTPUT_KINDS = ("reasoning", "function_call", "message")
_ID_PREFIXES = {"reasoning": "rs_", "function_call": "fc_", "message": "msg_"}

MODEL_COMPLETES = "emulator-completes"
MODEL_TOOLS = "emulator-tools"
MODEL_FAILS = "emulator-fails"
MODEL_INCOMPLETE = "emulator-incomplete"
MODEL_CANCELLED = "emulator-cancelled"
MODEL_SLOW = "emulator-slow"

RESPONSE_USAGE: dict[str, Any] = {
    "input_tokens": 36,
    "input_tokens_details": {"cached_tokens": 12, "cache_write_tokens": 0},
    "output_tokens": 87,
    "output_tokens_details": {"reasoning_tokens": 24},
    "total_tokens": 123,
}
WEATHER_ARGUMENTS = '{"city":"Paris"}'


@dataclass(frozen=True)
class ResponseScript:
    """The statuses responses of one model walk, what they output, and how they advance."""

    statuses: tuple[str, ...] = ("queued", "in_progress", "completed")
    output: tuple[str, ...] = ("reasoning", "message")
    error: dict[str, Any] | None = None
    incomplete_reason: str = "max_output_tokens"
    text: str | None = None
    advance: Advance = "poll"
    seconds_per_status: float = 1.0

    def __post_init__(self) -> None:
        if not self.statuses:
            raise ValueError("a response script needs at least one status")
        for index, status in enumerate(self.statuses):
            if status not in RESPONSE_STATUSES and not _OWN_STATUS.fullmatch(status):
                raise ValueError(
                    f"bad response status {status!r}: one of {RESPONSE_STATUSES}, or a lower-case name "
                    "(a non-final status of a server's own)"
                )
            if (status in RESPONSE_TERMINAL_STATUSES) != (index == len(self.statuses) - 1):
                raise ValueError("a response script must end in a terminal status, and only there")
        unknown = [kind for kind in self.output if kind not in OUTPUT_KINDS]
        if unknown:
            raise ValueError(f"unknown output kind {unknown[0]!r}; expected some of {OUTPUT_KINDS}")
        if self.advance not in ("poll", "time"):
            raise ValueError(f"advance must be 'poll' or 'time', not {self.advance!r}")
        if self.seconds_per_status <= 0:
            raise ValueError("seconds_per_status must be positive")


_WALK = ("queued", "in_progress")
BUILTIN_RESPONSE_SCRIPTS: dict[str, ResponseScript] = {
    MODEL_COMPLETES: ResponseScript(),
    MODEL_TOOLS: ResponseScript(output=("function_call",)),
    MODEL_FAILS: ResponseScript((*_WALK, "failed")),
    MODEL_INCOMPLETE: ResponseScript((*_WALK, "incomplete"), output=("message",)),
    MODEL_CANCELLED: ResponseScript((*_WALK, "cancelled")),
    MODEL_SLOW: ResponseScript(("queued", *("in_progress",) * SLOW_POLLS, "completed")),
}

#: The fields a response echoes from its request, and what it shows when the request left them out.
_ECHOED: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": {"effort": None, "summary": None},
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}, "verbosity": "medium"},
    "tool_choice": "auto",
    "tools": [],
    "top_logprobs": 0,
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
    "metadata": {},
}


def input_items(response_id: str, given: Any) -> list[dict[str, Any]]:
    """The request's `input` as the input_items endpoint lists it: items with ids, text as parts."""
    raw = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    items: list[dict[str, Any]] = []
    for index, given_item in enumerate(raw):
        item: dict[str, Any] = copy.deepcopy(given_item)
        item.setdefault("type", "message")
        if item["type"] == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        if item["type"] == "message":
            item.setdefault("status", "completed")
        item.setdefault("id", stable_id("msg_", response_id, "input", str(index)))
        items.append(item)
    return items


def _last_text(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        for part in reversed(item.get("content") or []):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                return str(part["text"])
    return ""


@dataclass
class BackgroundResponse:
    """One response walking its script. Not thread-safe: ResponseStore calls it under its lock."""

    id: str
    model: str
    script: ResponseScript
    background: bool
    request: dict[str, Any]
    inputs: list[dict[str, Any]]
    created_at: int
    started: float
    advance: Advance
    seconds_per_status: float
    index: int = 0
    cancelled: bool = False
    ended_at: int | None = None

    @property
    def status(self) -> str:
        return "cancelled" if self.cancelled else self.script.statuses[self.index]

    @property
    def terminal(self) -> bool:
        return self.status in RESPONSE_TERMINAL_STATUSES

    def advance_to(self, now: float, *, poll: bool) -> None:
        """One status per GET ("poll"), or as many as the clock says ("time")."""
        if self.terminal:
            return
        last = len(self.script.statuses) - 1
        if self.advance == "poll":
            self.index = min(self.index + 1, last) if poll else self.index
        else:
            self.index = min(int((now - self.started) / self.seconds_per_status), last)
        if self.index == last:
            self.ended_at = self.created_at + int(now - self.started)

    def cancel(self, now: float) -> None:
        if not self.background:
            raise RunError(400, "Only responses created with background=true can be cancelled.")
        if not self.terminal:
            self.cancelled = True
            self.ended_at = self.created_at + int(now - self.started)

    def render(self) -> dict[str, Any]:
        """The response as the live API returns it (a deep copy)."""
        status = self.status
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": self.background,
            "completed_at": self.ended_at if status == "completed" else None,
            "error": (self.script.error or dict(DEFAULT_LAST_ERROR)) if status == "failed" else None,
            "incomplete_details": {"reason": self.script.incomplete_reason}
            if status == "incomplete"
            else None,
            "model": self.model,
            "output": self._output(status),
            "usage": copy.deepcopy(RESPONSE_USAGE) if status in ("completed", "incomplete") else None,
        }
        body.update({name: self.request.get(name, default) for name, default in _ECHOED.items()})
        return copy.deepcopy(body)

    def _output(self, status: str) -> list[dict[str, Any]]:
        kinds = {"completed": self.script.output, "incomplete": ("message",)}.get(status, ())
        text = self.script.text or f"Emulated answer to: {_last_text(self.inputs)}"
        if status == "incomplete":
            text = text[: max(1, len(text) // 2)]
        items: list[dict[str, Any]] = []
        for position, kind in enumerate(kinds):
            item_id = stable_id(_ID_PREFIXES[kind], self.id, str(position))
            if kind == "reasoning":
                summary = [{"type": "summary_text", "text": "Read the question; answer briefly."}]
                items.append({"id": item_id, "type": "reasoning", "summary": summary})
            elif kind == "function_call":
                call_id = stable_id("call_", self.id, str(position))
                items.append(
                    {
                        "id": item_id,
                        "type": "function_call",
                        "status": "completed",
                        "call_id": call_id,
                        "name": "get_weather",
                        "arguments": WEATHER_ARGUMENTS,
                    }
                )
            else:
                part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                items.append(
                    {
                        "id": item_id,
                        "type": "message",
                        "status": status,
                        "role": "assistant",
                        "content": [part],
                    }
                )
        return items

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "status": self.status, "background": self.background}


@dataclass
class ResponseStore:
    """Thread-safe background responses; `clock` is the emulator state's (injectable) clock."""

    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _scripts: dict[str, ResponseScript] = field(default_factory=dict)
    _responses: dict[str, BackgroundResponse] = field(default_factory=dict)
    created: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._scripts = dict(BUILTIN_RESPONSE_SCRIPTS)
            self._responses.clear()
            self.created = 0

    def add_script(self, model: str, **options: Any) -> None:
        """Make new responses of `model` walk a script (see ResponseScript for the options)."""
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        for name in ("statuses", "output"):
            if name in options:
                options[name] = tuple(options[name])
        script = ResponseScript(**options)
        with self._lock:
            self._scripts[model] = script

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """Create a response from a validated request and render it (its first status, or its last)."""
        with self._lock:
            previous = request.get("previous_response_id")
            if previous is not None and previous not in self._responses:
                raise RunError(
                    404, f"Previous response with id '{previous}' not found.", param="previous_response_id"
                )
            model = request.get("model") or (self._responses[previous].model if previous else MODEL_COMPLETES)
            script = self._scripts.get(model, BUILTIN_RESPONSE_SCRIPTS[MODEL_COMPLETES])
            advance, seconds = advance_options(
                request.get("metadata") or {}, script.advance, script.seconds_per_status
            )
            response_id = "resp_" + secrets.token_hex(24)
            response = BackgroundResponse(
                id=response_id,
                model=model,
                script=script,
                background=bool(request.get("background")),
                request=copy.deepcopy(request),
                inputs=input_items(response_id, request.get("input")),
                created_at=int(time.time()),
                started=self.clock(),
                advance=advance,
                seconds_per_status=seconds,
            )
            if not response.background:  # answered when done
                response.index = len(script.statuses) - 1
                response.ended_at = response.created_at
            self._responses[response_id] = response
            self.created += 1
            return response.render()

    def retrieve(self, response_id: str) -> dict[str, Any] | None:
        """Render a response for GET, moving it along; None if unknown (or deleted)."""
        with self._lock:
            response = self._responses.get(response_id)
            if response is None:
                return None
            response.advance_to(self.clock(), poll=True)
            return response.render()

    def cancel(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            response = self._responses.get(response_id)
            if response is None:
                return None
            now = self.clock()
            response.advance_to(now, poll=False)
            response.cancel(now)
            return response.render()

    def delete(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            if self._responses.pop(response_id, None) is None:
                return None
            return {"id": response_id, "object": "response", "deleted": True}

    def inputs(self, response_id: str) -> list[dict[str, Any]] | None:
        with self._lock:
            response = self._responses.get(response_id)
            return None if response is None else copy.deepcopy(response.inputs)

    @property
    def summaries(self) -> list[dict[str, Any]]:
        """Every stored response, oldest first (a look, not a poll)."""
        with self._lock:
            now = self.clock()
            for response in self._responses.values():
                response.advance_to(now, poll=False)
            return [response.summary() for response in self._responses.values()]
