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
