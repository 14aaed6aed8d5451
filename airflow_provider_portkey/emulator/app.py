"""Routing and response building as plain functions, so they can be tested without sockets.

`handle_api` plays hosted Portkey (mode "portkey") or an OpenAI-compatible upstream behind the
open-source gateway (mode "openai"): the run-step endpoints here, the thread and run endpoints in
run_api.py, the Responses endpoints in response_api.py, behind the same header checks (and, as
Portkey, the gateway's own JSON body parse). `handle_control` serves the `/_emulator/` control API;
`fault_response` renders the faults that are only a different response (status, malformed, redirect).
"""

from __future__ import annotations

import http
import json
import re
import secrets
import uuid
from dataclasses import asdict
from typing import Any, Literal

from airflow_provider_portkey.emulator import feedback_api, response_api, run_api
from airflow_provider_portkey.emulator.lists import list_response, paginate
from airflow_provider_portkey.emulator.responses import (
    Response,
    gateway_error,
    json_response,
    upstream_error,
)
from airflow_provider_portkey.emulator.state import EmulatorState, Fault, ReceivedRequest

__all__ = [
    "CONTROL_PREFIX",
    "Mode",
    "Response",
    "fault_response",
    "gateway_error",
    "gateway_timeout",
    "handle_api",
    "handle_control",
    "json_response",
    "paginate",
    "reason_phrase",
    "request_timeout",
    "upstream_error",
]

Mode = Literal["portkey", "openai"]
CONTROL_PREFIX = "/_emulator/"
INCLUDE_VALUES = ("step_details.tool_calls[*].file_search.results[*].content",)

_STEP_PATH = re.compile(r"/v1/threads/([^/]+)/runs/([^/]+)/steps/([^/]+)")
_STEPS_PATH = re.compile(r"/v1/threads/([^/]+)/runs/([^/]+)/steps")


def handle_api(state: EmulatorState, mode: Mode, request: ReceivedRequest, body: bytes = b"") -> Response:
    """Answer an API request (`body` is the request body, read by the POST endpoints)."""
    return _stamp(_api(state, mode, request, body), mode, request)


def fault_response(fault: Fault, mode: Mode, request: ReceivedRequest) -> Response:
    """The response of a `status`, `malformed` or `redirect` fault; fault headers win."""
    if fault.kind == "status":
        status = fault.status or 500
        response = _default_fault_error(status) if fault.body is None else _json_bytes(status, fault.body)
    elif fault.kind == "malformed":
        response = _json_bytes(fault.status or 200, fault.body or b"")
    elif fault.kind == "redirect" and fault.location:
        response = Response(fault.status or 307, b"", {"location": fault.location})
    else:
        raise ValueError(f"a {fault.kind!r} fault is not a plain response")
    response = _stamp(response, mode, request)
    response.headers.update({name.lower(): value for name, value in fault.headers.items()})
    return response


def handle_control(state: EmulatorState, request: ReceivedRequest, body: bytes) -> Response:
    """The unauthenticated control API other processes use to script the emulator.

    POST steps (add_step), POST runs (add_run_script: a script for an assistant id), GET runs
    (`runs_created` and a summary per run), POST responses (a response script for a model), GET
    responses (`responses_created` and a summary per response), POST faults (add_fault), GET
    feedback (what `POST /v1/feedback` accepted), GET requests, POST reset.
    """
    route = (request.method, request.path.removeprefix(CONTROL_PREFIX))
    try:
        if route == ("POST", "steps"):
            state.add_step(**_json_object(body))
            response = json_response(201, {"ok": True})
        elif route == ("POST", "runs"):
            state.add_run_script(**_json_object(body))
            response = json_response(201, {"ok": True})
        elif route == ("GET", "runs"):
            response = json_response(200, {"runs_created": state.runs_created, "runs": state.runs})
        elif route == ("POST", "faults"):
            state.add_fault(**_json_object(body))
            response = json_response(201, {"ok": True})
        elif route == ("POST", "responses"):
            script = _json_object(body)
            state.responses.add_script(script.pop("model", None), **script)
            response = json_response(201, {"ok": True})
        elif route == ("GET", "responses"):
            summaries = state.responses.summaries
            response = json_response(
                200, {"responses_created": state.responses.created, "responses": summaries}
            )
        elif route == ("GET", "feedback"):
            response = json_response(200, {"feedback": state.feedback.items})
        elif route == ("GET", "requests"):
            response = json_response(200, {"requests": [asdict(r) for r in state.requests]})
        elif route == ("POST", "reset"):
            state.reset()
            response = json_response(200, {"ok": True})
        else:
            response = json_response(404, {"error": f"no control endpoint {request.method} {request.path}"})
    except (TypeError, ValueError) as exc:
        response = json_response(400, {"error": str(exc)})
    return _stamp(response, "openai", request)


def _api(state: EmulatorState, mode: Mode, request: ReceivedRequest, body: bytes) -> Response:
    if request.method == "GET" and request.path == "/":
        return json_response(200, {"status": "ok"})
    if mode == "portkey" and request.method == "POST" and request.path == feedback_api.PATH:
        # Portkey's own API: the Portkey key is all it needs, no provider.
        return _check_portkey_key(state, request.headers) or feedback_api.handle(state.feedback, body)
    denied = _check_auth(state, mode, request.headers)
    if denied:
        return denied
    if mode == "portkey" and _unparsable_json_body(request, body):
        return gateway_error(500, "Proxy error: Unexpected end of JSON input")
    response_route = response_api.match(request.method, request.path)
    if response_route is not None:
        return response_api.handle(state, response_route, body, dict(request.query))
    run_route = run_api.match(request.method, request.path)
    if run_route is not None:
        return _check_beta(request.headers) or run_api.handle(state, run_route, body, dict(request.query))
    step = _STEP_PATH.fullmatch(request.path)
    steps = _STEPS_PATH.fullmatch(request.path)
    if request.method != "GET" or not (step or steps):
        return upstream_error(404, f"Invalid URL ({request.method} {request.path})")
    invalid = _check_beta(request.headers) or _check_include(request.query)
    if invalid:
        return invalid
    if step:
        thread_id, run_id, step_id = step.groups()
        found = state.retrieve_step(thread_id, run_id, step_id)
        if found is None:
            return upstream_error(404, f"No run step found with id '{step_id}'.")
        return json_response(200, found)
    assert steps is not None
    thread_id, run_id = steps.groups()
    return _list_steps(state, thread_id, run_id, dict(request.query))


def _list_steps(state: EmulatorState, thread_id: str, run_id: str, query: dict[str, str]) -> Response:
    items = state.list_steps(thread_id, run_id)
    if items is None:
        return upstream_error(404, f"No run found with id '{run_id}'.")
    return list_response(items, query)


def _bearer_key(headers: dict[str, str]) -> str | None:
    scheme, _, key = headers.get("authorization", "").partition(" ")
    key = key.strip()
    return key if scheme.lower() == "bearer" and key not in ("", "undefined") else None


def _invalid_api_key() -> Response:
    return upstream_error(401, "Incorrect API key provided.", code="invalid_api_key")


def _check_auth(state: EmulatorState, mode: Mode, headers: dict[str, str]) -> Response | None:
    """Portkey's gateway checks in its order; in openai mode only the upstream's bearer check."""
    if mode == "openai":
        return None if _bearer_key(headers) else _invalid_api_key()
    denied = _check_portkey_key(state, headers)
    if denied:
        return denied
    configured = headers.get("x-portkey-virtual-key") or headers.get("x-portkey-config")
    if not configured and not headers.get("x-portkey-provider"):
        return gateway_error(400, "Either x-portkey-config or x-portkey-provider header is required")
    if not configured and not _bearer_key(headers):
        return _invalid_api_key()
    return None


def _check_portkey_key(state: EmulatorState, headers: dict[str, str]) -> Response | None:
    api_key = headers.get("x-portkey-api-key")
    if not api_key:
        return gateway_error(401, "Portkey API Key Not Found")
    if state.api_keys is not None and api_key not in state.api_keys:
        return gateway_error(401, "Invalid API Key")
    return None


def _unparsable_json_body(request: ReceivedRequest, body: bytes) -> bool:
    """The gateway parses a JSON-typed POST body before proxying it; an empty one fails that parse."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return request.method == "POST" and content_type == "application/json" and not body.strip()


def request_timeout(mode: Mode, request: ReceivedRequest) -> float | None:
    """Seconds of ``x-portkey-request-timeout`` (sent in ms) the gateway gives the upstream, if any."""
    raw = request.headers.get("x-portkey-request-timeout", "").strip()
    if mode != "portkey" or not raw:
        return None
    try:
        milliseconds = float(raw)
    except ValueError:
        return None
    return milliseconds / 1000 if milliseconds > 0 else None


def gateway_timeout(request: ReceivedRequest) -> Response:
    """The gateway's 408 once ``x-portkey-request-timeout`` passed without an upstream answer."""
    raw = request.headers.get("x-portkey-request-timeout", "").strip()
    shown = f"{float(raw):g}" if raw else raw
    message = f"Request exceeded the timeout sent in the request: {shown}ms"
    return _stamp(upstream_error(408, message, type="timeout_error"), "portkey", request)


def _check_beta(headers: dict[str, str]) -> Response | None:
    """The Assistants API's beta, required as upstream does; the Responses API never checks one."""
    betas = {value.strip() for value in headers.get("openai-beta", "").split(",")}
    if "assistants=v2" in betas:
        return None
    message = (
        "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
        "Please try again by setting the header 'OpenAI-Beta: assistants=v2'."
    )
    return upstream_error(400, message, code="invalid_beta")


def _check_include(query: list[tuple[str, str]]) -> Response | None:
    values = [value for name, value in query if name == "include[]"]
    for index, value in enumerate(values):
        if value not in INCLUDE_VALUES:
            message = f"Invalid value: '{value}'. Supported values are: '{INCLUDE_VALUES[0]}'."
            return upstream_error(400, message, param=f"include[{index}]", code="invalid_value")
    return None


def _json_object(body: bytes) -> dict[str, Any]:
    payload = json.loads(body or b"{}")
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    return payload


def _json_bytes(status: int, body: bytes) -> Response:
    return Response(status, body, {"content-type": "application/json"})


def reason_phrase(status: int) -> str:
    """The standard reason phrase, or "" for codes like Portkey's 446 that have none."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _default_fault_error(status: int) -> Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    message = f"Emulated fault: {status} {reason_phrase(status)}".rstrip() + "."
    return upstream_error(status, message, type=kind)


def _stamp(response: Response, mode: Mode, request: ReceivedRequest) -> Response:
    """Add the ids every response carries: x-request-id, and Portkey's trace id in portkey mode."""
    response.headers["x-request-id"] = "req_" + secrets.token_hex(16)
    if mode == "portkey":
        response.headers["x-portkey-trace-id"] = request.headers.get("x-portkey-trace-id") or str(
            uuid.uuid4()
        )
    return response
