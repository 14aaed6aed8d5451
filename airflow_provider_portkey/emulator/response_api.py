"""The Responses API endpoints: create, retrieve, cancel, delete, and list a response's input items.

Bodies are checked the way the upstream checks them (unknown fields, JSON kinds, metadata limits,
`store: false` with `background`), with the same `{"error": {...}}` shapes as the run endpoints,
whose checks this reuses. The objects come from emulator/background.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_portkey.emulator.lists import list_response
from airflow_provider_portkey.emulator.responses import Response, json_response, upstream_error
from airflow_provider_portkey.emulator.run_api import _body, _check_metadata, _check_range, _missing
from airflow_provider_portkey.emulator.runs import RunError
from airflow_provider_portkey.emulator.state import EmulatorState

_RESPONSES_PATH = re.compile(r"/v1/responses")
_RESPONSE_PATH = re.compile(r"/v1/responses/([^/]+)")
_CANCEL_PATH = re.compile(r"/v1/responses/([^/]+)/cancel")
_INPUT_ITEMS_PATH = re.compile(r"/v1/responses/([^/]+)/input_items")

# Allowed JSON kinds per body field (from the spec's CreateResponse).
CREATE_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("string",),
    "input": ("string", "array"),
    "instructions": ("string", "array", "null"),
    "tools": ("array", "null"),
    "tool_choice": ("string", "object", "null"),
    "parallel_tool_calls": ("boolean", "null"),
    "metadata": ("object", "null"),
    "previous_response_id": ("string", "null"),
    "conversation": ("string", "object", "null"),
    "background": ("boolean", "null"),
    "store": ("boolean", "null"),
    "stream": ("boolean", "null"),
    "include": ("array", "null"),
    "max_output_tokens": ("integer", "null"),
    "max_tool_calls": ("integer", "null"),
    "reasoning": ("object", "null"),
    "text": ("object", "null"),
    "temperature": ("number", "null"),
    "top_p": ("number", "null"),
    "top_logprobs": ("integer", "null"),
    "truncation": ("string", "null"),
    "prompt": ("object", "null"),
    "prompt_cache_key": ("string", "null"),
    "safety_identifier": ("string", "null"),
    "service_tier": ("string", "null"),
    "user": ("string", "null"),
}


@dataclass(frozen=True)
class ResponseRoute:
    action: str
    response_id: str | None = None


def match(method: str, path: str) -> ResponseRoute | None:
    """The Responses endpoint for this request, or None."""
    if method == "POST" and _RESPONSES_PATH.fullmatch(path):
        return ResponseRoute("create")
    if method == "POST" and (found := _CANCEL_PATH.fullmatch(path)):
        return ResponseRoute("cancel", found.group(1))
    if method == "GET" and (found := _INPUT_ITEMS_PATH.fullmatch(path)):
        return ResponseRoute("input_items", found.group(1))
    if method in ("GET", "DELETE") and (found := _RESPONSE_PATH.fullmatch(path)):
        return ResponseRoute("retrieve" if method == "GET" else "delete", found.group(1))
    return None


def handle(state: EmulatorState, route: ResponseRoute, body: bytes, query: dict[str, str]) -> Response:
    """Answer a matched Responses endpoint; RunError from validation or the store becomes its error."""
    store = state.responses
    try:
        if route.action == "create":
            return json_response(200, store.create(_create_request(body)))
        assert route.response_id is not None
        if route.action == "retrieve":
            return _found(route.response_id, store.retrieve(route.response_id))
        if route.action == "cancel":
            return _found(route.response_id, store.cancel(route.response_id))
        if route.action == "delete":
            return _found(route.response_id, store.delete(route.response_id))
        return _input_items(state, route.response_id, query)
    except RunError as error:
        return upstream_error(error.status, error.message, param=error.param, code=error.code)


def _create_request(body: bytes) -> dict[str, object]:
    request = _body(body, CREATE_FIELDS)
    if "model" not in request and "previous_response_id" not in request and "prompt" not in request:
        raise _missing("model")
    if request.get("stream"):
        raise RunError(
            400, "The emulator does not stream responses: leave 'stream' out or false.", param="stream"
        )
    if request.get("background") and request.get("store") is False:
        raise RunError(400, "Background mode requires store=true.", param="store", code="invalid_value")
    _check_metadata(request.get("metadata"), "metadata")
    _check_range(request, "temperature", 0, 2, "decimal")
    _check_range(request, "top_p", 0, 1, "decimal")
    _check_range(request, "max_output_tokens", 16, None, "integer")
    return request


def _input_items(state: EmulatorState, response_id: str, query: dict[str, str]) -> Response:
    items = state.responses.inputs(response_id)
    if items is None:
        return _found(response_id, None)
    return list_response(items, query)


def _found(response_id: str, payload: dict[str, object] | None) -> Response:
    if payload is None:
        return upstream_error(404, f"Response with id '{response_id}' not found.")
    return json_response(200, payload)
