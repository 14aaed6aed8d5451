"""Portkey's feedback endpoint (``POST /v1/feedback``): a hosted-Portkey feature, so portkey mode only.

The body is checked as Portkey documents it (``trace_id`` a string, ``value`` a whole number from
-10 to 10, ``weight`` a number from 0 to 1, ``metadata`` an object) and a bad one is answered in the
gateway's own error shape, naming the field. Accepted feedback is kept for tests
(``GET /_emulator/feedback``). It needs only the Portkey API key: no provider is involved.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from airflow_provider_portkey.emulator.responses import Response, gateway_error, json_response

PATH = "/v1/feedback"


class FeedbackStore:
    """The feedback accepted since the last reset, in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []

    def reset(self) -> None:
        with self._lock:
            self._items.clear()

    def add(self, feedback: dict[str, Any]) -> str:
        feedback_id = str(uuid.uuid4())
        with self._lock:
            self._items.append({"id": feedback_id, **feedback})
        return feedback_id

    @property
    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(item) for item in self._items]


def _problem(body: bytes) -> tuple[str | None, dict[str, Any]]:
    """What is wrong with the body (or ``None``), and the body as an object."""
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        return "the body must be JSON", {}
    if not isinstance(payload, dict):
        return "the body must be a JSON object", {}
    trace_id, value, weight = payload.get("trace_id"), payload.get("value"), payload.get("weight")
    if not isinstance(trace_id, str) or not trace_id:
        return '"trace_id" is required and must be a string', payload
    if isinstance(value, bool) or not isinstance(value, int) or not -10 <= value <= 10:
        return '"value" is required and must be an integer between -10 and 10', payload
    if weight is not None and (
        isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1
    ):
        return '"weight" must be a number between 0 and 1', payload
    if payload.get("metadata") is not None and not isinstance(payload["metadata"], dict):
        return '"metadata" must be an object', payload
    return None, payload


def handle(store: FeedbackStore, body: bytes) -> Response:
    problem, payload = _problem(body)
    if problem is not None:
        return gateway_error(400, f"Invalid feedback: {problem}")
    feedback_id = store.add(payload)
    return json_response(
        200, {"status": "success", "message": "Feedback successfully saved", "feedback_ids": [feedback_id]}
    )
