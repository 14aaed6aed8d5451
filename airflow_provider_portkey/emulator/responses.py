"""Responses as plain data, and the two error shapes a client of Portkey meets.

Upstream errors (`{"error": {message, type, param, code}}`) pass through Portkey unchanged; the
gateway's own errors are `{"status": "failure", "message": ...}`. Keeping both here lets every
handler module build them without importing the router.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    """What to send: status, lower-case header names to values, and the body bytes."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload).encode(), {"content-type": "application/json"})


def upstream_error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> Response:
    """An error as OpenAI-compatible upstreams send it (Portkey passes these through unchanged)."""
    error = {"message": message, "type": type, "param": param, "code": code}
    return json_response(status, {"error": error})


def gateway_error(status: int, message: str) -> Response:
    """An error raised by the Portkey gateway itself, before any upstream is called."""
    return json_response(status, {"status": "failure", "message": message})
