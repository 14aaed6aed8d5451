"""The JSON objects the emulator sends, shaped as the live API sends them (not as the spec says).

Scripted steps (state.py) and the steps that agent runs create (runs.py) render through the same
`step_object`, so a client sees one shape whichever way a step came about.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Literal, get_args

RunStatus = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
RUN_TERMINAL_STATUSES = frozenset({"cancelled", "failed", "completed", "incomplete", "expired"})
STEP_TERMINAL_STATUSES = frozenset({"cancelled", "failed", "completed", "expired"})

ASSISTANT_ID = "asst_emulator"
EXPIRY_SECONDS = 600  # live steps and runs carry expires_at about ten minutes after created_at
DEFAULT_LAST_ERROR: dict[str, Any] = {"code": "server_error", "message": "Sorry, something went wrong."}
USAGE: dict[str, Any] = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


def stable_id(prefix: str, *parts: str) -> str:
    """Derive an id from its owners' ids so repeated renders (and re-seeds) show the same value."""
    return prefix + hashlib.sha256("/".join(parts).encode()).hexdigest()[:24]


def step_object(
    *,
    id: str,
    thread_id: str,
    run_id: str,
    assistant_id: str,
    type: str,
    status: str,
    created_at: int,
    ended_at: int | None,
    last_error: dict[str, Any] | None,
    step_details: dict[str, Any],
) -> dict[str, Any]:
    """A run step as the live API returns it: `expires_at`, no `metadata`, usage once terminal.

    `ended_at` is when the step reached its terminal status (ignored while it is in progress).
    The result is a deep copy: callers may change it without changing the emulator's state.
    """
    terminal = status in STEP_TERMINAL_STATUSES
    ended = ended_at if terminal else None
    body: dict[str, Any] = {
        "id": id,
        "object": "thread.run.step",
        "created_at": created_at,
        "run_id": run_id,
        "assistant_id": assistant_id,
        "thread_id": thread_id,
        "type": type,
        "status": status,
        "cancelled_at": ended if status == "cancelled" else None,
        "completed_at": ended if status == "completed" else None,
        "expires_at": ended if status == "expired" else created_at + EXPIRY_SECONDS,
        "failed_at": ended if status == "failed" else None,
        "last_error": (last_error or DEFAULT_LAST_ERROR) if status == "failed" else None,
        "step_details": step_details,
        "usage": dict(USAGE) if terminal else None,
    }
    return copy.deepcopy(body)


def message_creation_details(thread_id: str, run_id: str, step_id: str) -> dict[str, Any]:
    message_id = stable_id("msg_", thread_id, run_id, step_id)
    return {"type": "message_creation", "message_creation": {"message_id": message_id}}


def thread_object(
    *, id: str, created_at: int, metadata: dict[str, Any], tool_resources: dict[str, Any]
) -> dict[str, Any]:
    """A thread as the live API returns it (a deep copy)."""
    body = {
        "id": id,
        "object": "thread",
        "created_at": created_at,
        "metadata": metadata,
        "tool_resources": tool_resources,
    }
    return copy.deepcopy(body)


def message_object(
    *,
    id: str,
    thread_id: str,
    role: str,
    content: str | list[dict[str, Any]],
    created_at: int,
    status: str = "completed",
    assistant_id: str | None = None,
    run_id: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A thread message as the live API returns it; request-style `content` is rendered as the API does."""
    body = {
        "id": id,
        "object": "thread.message",
        "created_at": created_at,
        "assistant_id": assistant_id,
        "thread_id": thread_id,
        "run_id": run_id,
        "role": role,
        "content": _message_content(content),
        "attachments": attachments or [],
        "metadata": metadata or {},
        "status": status,
        "incomplete_details": None,
        "completed_at": created_at if status == "completed" else None,
        "incomplete_at": created_at if status == "incomplete" else None,
    }
    return copy.deepcopy(body)


def _message_content(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A message's content blocks: a string (or a request's text part) becomes a text block."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": content}] if isinstance(content, str) else content
    return [
        {"type": "text", "text": {"value": part["text"], "annotations": []}}
        if part.get("type") == "text" and isinstance(part.get("text"), str)
        else part
        for part in parts
    ]
