"""The Response model: strict on id and status, lenient and lossless everywhere else (models.py's rules)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from airflow_provider_portkey.models_response import Response, ResponseStatus


def completed() -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "id": "msg_1",
                "content": [
                    {"type": "output_text", "text": "Hello, ", "annotations": []},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "world", "annotations": []},
                ],
            },
            {"type": "function_call", "id": "fc_1", "name": "f", "arguments": "{}"},
        ],
        "usage": {
            "input_tokens": 12,
            "input_tokens_details": {"cached_tokens": 2},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 8},
            "total_tokens": 42,
        },
    }


def test_output_text_joins_the_text_parts_of_message_items_only() -> None:
    response = Response.from_api(completed())
    assert response.output_text == "Hello, world"
    assert response.usage is not None
    assert response.usage.describe() == "input 12 (cached 2), output 30 (reasoning 8), total 42"
    assert (response.is_terminal, response.succeeded) == (True, True)


def test_unreadable_fields_never_fail_and_the_json_stays_as_sent() -> None:
    data = completed()
    data["usage"]["input_tokens"] = "many"
    data["error"] = "a string where an object belongs"
    data["output"][1]["content"] = "not a list"
    data["created_at"] = "yesterday"
    data["brand_new_field"] = {"nested": [1]}

    response = Response.from_api(copy.deepcopy(data))

    assert response.usage is not None
    assert response.usage.input_tokens is None
    assert response.error is None
    assert response.output_text == ""  # the message's content could not be read
    assert response.to_json() == data


@pytest.mark.parametrize(
    "bad",
    [
        {"status": "completed"},
        {"id": "resp_1"},
        {"id": "", "status": "completed"},
        {"id": "resp_1", "status": ""},
    ],
)
def test_id_and_status_are_required(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Response.from_api(bad)


def test_another_object_is_refused() -> None:
    with pytest.raises(ValidationError, match="object"):
        Response.from_api({"id": "run_1", "object": "thread.run", "status": "completed"})


def test_a_status_this_provider_does_not_know_is_kept_and_never_final() -> None:
    response = Response.from_api({"id": "resp_1", "status": "paused"})
    assert response.status == "paused"
    assert not isinstance(response.status, ResponseStatus)
    assert (response.known_status, response.is_terminal, response.succeeded) == (None, False, False)
    assert response.describe() == "response resp_1 is paused"


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (
            {"status": "failed", "error": {"code": "server_error", "message": "boom"}},
            "is failed: server_error: boom",
        ),
        ({"status": "failed", "error": {"code": None, "message": None}}, "is failed"),
        (
            {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}},
            ": max_output_tokens",
        ),
    ],
)
def test_describe_says_why_a_response_ended_so(extra: dict[str, Any], said: str) -> None:
    description = Response.from_api({"id": "resp_1", **extra}).describe()
    assert description.startswith("response resp_1 ")
    assert description.endswith(said)
