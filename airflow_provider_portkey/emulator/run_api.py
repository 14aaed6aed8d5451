"""The thread and run endpoints: threads (create, retrieve, list their messages and runs), runs
(create with or without a new thread, retrieve, cancel, submit tool outputs).

POST bodies are checked the way the upstream checks them (unknown fields, types, ranges), and a bad
body is a 400 upstream-shaped error whose `param` names the field, so a client's error handling is
exercised as it would be against the real API. Only what a run needs is checked in depth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_portkey.emulator.lists import list_response
from airflow_provider_portkey.emulator.responses import Response, json_response, upstream_error
from airflow_provider_portkey.emulator.runs import RunError
from airflow_provider_portkey.emulator.state import EmulatorState

_THREADS_PATH = re.compile(r"/v1/threads")
_THREAD_PATH = re.compile(r"/v1/threads/([^/]+)")
_MESSAGES_PATH = re.compile(r"/v1/threads/([^/]+)/messages")
_THREAD_AND_RUN_PATH = re.compile(r"/v1/threads/runs")
_RUNS_PATH = re.compile(r"/v1/threads/([^/]+)/runs")
_RUN_PATH = re.compile(r"/v1/threads/([^/]+)/runs/([^/]+)")
_RUN_ACTION_PATH = re.compile(r"/v1/threads/([^/]+)/runs/([^/]+)/(cancel|submit_tool_outputs)")

_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
_METADATA_MAX_KEYS, _METADATA_KEY_MAX, _METADATA_VALUE_MAX = 16, 64, 512

# Allowed JSON kinds per body field (from the spec's CreateRunRequest / CreateThreadAndRunRequest).
_COMMON_FIELDS: dict[str, tuple[str, ...]] = {
    "assistant_id": ("string",),
    "model": ("string", "null"),
    "instructions": ("string", "null"),
    "tools": ("array", "null"),
    "metadata": ("object", "null"),
    "temperature": ("number", "null"),
    "top_p": ("number", "null"),
    "stream": ("boolean", "null"),
    "max_prompt_tokens": ("integer", "null"),
    "max_completion_tokens": ("integer", "null"),
    "truncation_strategy": ("object", "null"),
    "tool_choice": ("string", "object", "null"),
    "parallel_tool_calls": ("boolean", "null"),
    "response_format": ("string", "object", "null"),
}
THREAD_AND_RUN_FIELDS: dict[str, tuple[str, ...]] = {
    **_COMMON_FIELDS,
    "thread": ("object", "null"),
    "tool_resources": ("object", "null"),
}
RUN_FIELDS: dict[str, tuple[str, ...]] = {
    **_COMMON_FIELDS,
    "reasoning_effort": ("string", "null"),
    "additional_instructions": ("string", "null"),
    "additional_messages": ("array", "null"),
}
_THREAD_FIELDS: dict[str, tuple[str, ...]] = {
    "messages": ("array", "null"),
    "tool_resources": ("object", "null"),
    "metadata": ("object", "null"),
}
_TOOL_TYPES = ("code_interpreter", "file_search", "function")


@dataclass(frozen=True)
class RunRoute:
    """A matched run endpoint: which one, and the ids from its path."""

    action: str
    thread_id: str | None = None
    run_id: str | None = None


def match(method: str, path: str) -> RunRoute | None:
    """The thread or run endpoint for this request, or None (the caller answers 404 Invalid URL)."""
    if method == "POST" and _THREADS_PATH.fullmatch(path):
        return RunRoute("create_thread")
    if method == "GET" and (found := _THREAD_PATH.fullmatch(path)):
        return RunRoute("retrieve_thread", found.group(1))
    if method == "GET" and (found := _MESSAGES_PATH.fullmatch(path)):
        return RunRoute("list_messages", found.group(1))
    if method == "GET" and (found := _RUNS_PATH.fullmatch(path)):
        return RunRoute("list_runs", found.group(1))
    if method == "POST" and _THREAD_AND_RUN_PATH.fullmatch(path):
        return RunRoute("create_thread_and_run")
    if method == "POST" and (found := _RUNS_PATH.fullmatch(path)):
        return RunRoute("create_run", found.group(1))
    if method == "GET" and (found := _RUN_PATH.fullmatch(path)):
        return RunRoute("retrieve", *found.groups())
    if method == "POST" and (found := _RUN_ACTION_PATH.fullmatch(path)):
        thread_id, run_id, action = found.groups()
        return RunRoute(action, thread_id, run_id)
    return None


def handle(state: EmulatorState, route: RunRoute, body: bytes, query: Mapping[str, str]) -> Response:
    """Answer a matched endpoint; RunError from validation or the state becomes its error body."""
    try:
        if route.action in _LISTS:
            return _list(state, route, query)
        return _HANDLERS[route.action](state, route, body)
    except RunError as error:
        return upstream_error(error.status, error.message, param=error.param, code=error.code)


def _list(state: EmulatorState, route: RunRoute, query: Mapping[str, str]) -> Response:
    thread_id = _thread_id(route)
    items = _LISTS[route.action](state, thread_id)
    if items is None:
        raise _no_thread(thread_id)
    return list_response(items, query)


def _create_thread(state: EmulatorState, route: RunRoute, body: bytes) -> Response:
    # The SDK sends no body when no field is given: an empty thread.
    thread = _body(body, _THREAD_FIELDS) if body.strip() else {}
    _check_thread(thread, "")
    return json_response(200, state.create_thread(thread))


def _retrieve_thread(state: EmulatorState, route: RunRoute, body: bytes) -> Response:
    thread_id = _thread_id(route)
    thread = state.retrieve_thread(thread_id)
    if thread is None:
        raise _no_thread(thread_id)
    return json_response(200, thread)


def _create_thread_and_run(state: EmulatorState, route: RunRoute, body: bytes) -> Response:
    request = _body(body, THREAD_AND_RUN_FIELDS)
    thread = request.get("thread")
    if thread is not None:
        _check_fields(thread, _THREAD_FIELDS, "thread.")
        _check_thread(thread, "thread.")
    return _create(state, None, request)


def _check_thread(thread: dict[str, Any], prefix: str) -> None:
    _check_messages(thread.get("messages"), prefix + "messages")
    _check_metadata(thread.get("metadata"), prefix + "metadata")


def _create_run(state: EmulatorState, route: RunRoute, body: bytes) -> Response:
    request = _body(body, RUN_FIELDS)
    _check_messages(request.get("additional_messages"), "additional_messages")
    return _create(state, route.thread_id, request)


def _create(state: EmulatorState, thread_id: str | None, request: dict[str, Any]) -> Response:
    if "assistant_id" not in request:
        raise _missing("assistant_id")
    if request.get("stream"):
        raise RunError(400, "The emulator does not stream runs: leave 'stream' out or false.", param="stream")
    _check_metadata(request.get("metadata"), "metadata")
    _check_tools(request.get("tools"))
    _check_range(request, "temperature", 0, 2, "decimal")
    _check_range(request, "top_p", 0, 1, "decimal")
    _check_range(request, "max_prompt_tokens", 256, None, "integer")
    _check_range(request, "max_completion_tokens", 256, None, "integer")
    return json_response(200, state.create_run(thread_id, request["assistant_id"], request))


def _retrieve(state: EmulatorState, route: RunRoute, body: bytes) -> Response:
    thread_id, run_id = _ids(route)
    return _found(run_id, state.retrieve_run(thread_id, run_id))


def _cancel(state: EmulatorState, route: RunRoute, body: bytes) -> Response:
    thread_id, run_id = _ids(route)
    return _found(run_id, state.cancel_run(thread_id, run_id))


def _submit_tool_outputs(state: EmulatorState, route: RunRoute, body: bytes) -> Response:
    thread_id, run_id = _ids(route)
    request = _body(body, {"tool_outputs": ("array",), "stream": ("boolean", "null")})
    if "tool_outputs" not in request:
        raise _missing("tool_outputs")
    outputs: list[tuple[str, str]] = []
    for index, item in enumerate(request["tool_outputs"]):
        prefix = f"tool_outputs[{index}]"
        _check_kind(item, ("object",), prefix)
        _check_fields(item, {"tool_call_id": ("string",), "output": ("string",)}, prefix + ".")
        if "tool_call_id" not in item:
            raise _missing(prefix + ".tool_call_id")
        outputs.append((item["tool_call_id"], item.get("output", "")))
    return _found(run_id, state.submit_tool_outputs(thread_id, run_id, outputs))


_HANDLERS: dict[str, Callable[[EmulatorState, RunRoute, bytes], Response]] = {
    "create_thread": _create_thread,
    "retrieve_thread": _retrieve_thread,
    "create_thread_and_run": _create_thread_and_run,
    "create_run": _create_run,
    "retrieve": _retrieve,
    "cancel": _cancel,
    "submit_tool_outputs": _submit_tool_outputs,
}


_LISTS: dict[str, Callable[[EmulatorState, str], list[dict[str, Any]] | None]] = {
    "list_messages": EmulatorState.list_messages,
    "list_runs": EmulatorState.list_runs,
}


def _thread_id(route: RunRoute) -> str:
    if route.thread_id is None:
        raise ValueError(f"the {route.action} route has no thread")
    return route.thread_id


def _no_thread(thread_id: str) -> RunError:
    return RunError(404, f"No thread found with id '{thread_id}'.")


def _ids(route: RunRoute) -> tuple[str, str]:
    if route.thread_id is None or route.run_id is None:
        raise ValueError(f"the {route.action} route has no run")
    return route.thread_id, route.run_id


def _missing(param: str) -> RunError:
    return RunError(
        400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _found(run_id: str, run: dict[str, Any] | None) -> Response:
    if run is None:
        return upstream_error(404, f"No run found with id '{run_id}'.")
    return json_response(200, run)


def _body(body: bytes, fields: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError:
        raise RunError(400, _BAD_JSON) from None
    if not isinstance(payload, dict):
        raise RunError(400, f"Invalid body: expected a JSON object, but got {_kind(payload)} instead.")
    _check_fields(payload, fields, "")
    return payload


def _check_fields(payload: dict[str, Any], fields: dict[str, tuple[str, ...]], prefix: str) -> None:
    for name, value in payload.items():
        if name not in fields:
            raise RunError(
                400, f"Unknown parameter: '{prefix}{name}'.", param=prefix + name, code="unknown_parameter"
            )
        _check_kind(value, fields[name], prefix + name)


def _check_kind(value: Any, kinds: tuple[str, ...], param: str) -> None:
    """Raise the upstream's invalid_type error unless `value` is one of the JSON `kinds`."""
    actual = _json_kind(value)
    if actual in kinds or (actual == "integer" and "number" in kinds):
        return
    wanted = [_ARTICLES[kind] for kind in kinds if kind != "null"]
    expected = wanted[0] if len(wanted) == 1 else "one of " + " or ".join(wanted)
    message = f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead."
    raise RunError(400, message, param=param, code="invalid_type")


def _check_messages(messages: list[Any] | None, param: str) -> None:
    for index, message in enumerate(messages or []):
        prefix = f"{param}[{index}]"
        _check_kind(message, ("object",), prefix)
        fields = {
            "role": ("string",),
            "content": ("string", "array"),
            "attachments": ("array", "null"),
            "metadata": ("object", "null"),
        }
        _check_fields(message, fields, prefix + ".")
        for required in ("role", "content"):
            if required not in message:
                raise _missing(f"{prefix}.{required}")
        if message["role"] not in ("user", "assistant"):
            text = f"Invalid value: '{message['role']}'. Supported values are: 'user' and 'assistant'."
            raise RunError(400, text, param=prefix + ".role", code="invalid_value")


def _check_metadata(metadata: dict[str, Any] | None, param: str) -> None:
    if metadata is None:
        return
    if len(metadata) > _METADATA_MAX_KEYS:
        message = (
            f"Invalid '{param}': too many properties. Expected an object with at most "
            f"{_METADATA_MAX_KEYS} properties, but got an object with {len(metadata)} properties instead."
        )
        raise RunError(400, message, param=param, code="object_above_max_properties")
    for key, value in metadata.items():
        name = f"{param}.{key}"
        _check_kind(value, ("string",), name)
        for what, text, limit in (("key", key, _METADATA_KEY_MAX), ("string", value, _METADATA_VALUE_MAX)):
            if len(text) > limit:
                message = (
                    f"Invalid '{name}': {what} too long. Expected a {what} with maximum length "
                    f"{limit}, but got a {what} with length {len(text)} instead."
                )
                raise RunError(400, message, param=name, code="string_above_max_length")


def _check_tools(tools: list[Any] | None) -> None:
    for index, tool in enumerate(tools or []):
        prefix = f"tools[{index}]"
        _check_kind(tool, ("object",), prefix)
        kind = tool.get("type")
        if kind not in _TOOL_TYPES:
            supported = "'code_interpreter', 'file_search', and 'function'"
            message = f"Invalid value: '{kind}'. Supported values are: {supported}."
            raise RunError(400, message, param=prefix + ".type", code="invalid_value")
        if kind == "function" and not isinstance(tool.get("function"), dict):
            raise _missing(prefix + ".function")


def _check_range(request: dict[str, Any], name: str, low: float, high: float | None, kind: str) -> None:
    value = request.get(name)
    if value is None:
        return
    if value < low:
        detail = f"{kind} below minimum value. Expected a value >= {low}, but got {value} instead."
        raise RunError(400, f"Invalid '{name}': {detail}", param=name, code=f"{kind}_below_min_value")
    if high is not None and value > high:
        detail = f"{kind} above maximum value. Expected a value <= {high}, but got {value} instead."
        raise RunError(400, f"Invalid '{name}': {detail}", param=name, code=f"{kind}_above_max_value")


_ARTICLES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _kind(value: Any) -> str:
    """How the upstream names a value's type in its messages ("an integer", "a decimal", ...)."""
    kind = _json_kind(value)
    return {"null": "null", "number": "a decimal"}.get(kind) or _ARTICLES[kind]
