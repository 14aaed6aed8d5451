"""The Responses endpoints over real sockets: background responses, every ending, cancel, delete, input items.

Every response object the emulator sends is validated with the official ``openai`` SDK's types, the
oracle of what a client of the real API must be able to read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseItem
from openai.types.responses.response_item_list import ResponseItemList
from pydantic import TypeAdapter

from airflow_provider_portkey.emulator import EmulatorServer
from airflow_provider_portkey.emulator.background import (
    MODEL_CANCELLED,
    MODEL_COMPLETES,
    MODEL_FAILS,
    MODEL_INCOMPLETE,
    MODEL_SLOW,
    MODEL_TOOLS,
)
from tests.emulator.conftest import OPENAI_HEADERS, FakeClock


class ResponsesApi:
    """The Responses endpoints over a real client; every response object checked by the SDK."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def create(self, model: str = MODEL_COMPLETES, **body: Any) -> dict[str, Any]:
        return self.checked(self.client.post("/responses", json={"model": model, "input": "Hi", **body}))

    def background(self, model: str = MODEL_COMPLETES, **body: Any) -> dict[str, Any]:
        return self.create(model, background=True, **body)

    def get(self, response_id: str) -> dict[str, Any]:
        return self.checked(self.client.get(f"/responses/{response_id}"))

    def until_done(self, response_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """Every GET until the response is terminal (at most ``limit``)."""
        seen = [self.get(response_id)]
        while seen[-1]["status"] in ("queued", "in_progress"):
            assert len(seen) < limit, [r["status"] for r in seen]
            seen.append(self.get(response_id))
        return seen

    def cancel(self, response_id: str) -> httpx.Response:
        return self.client.post(f"/responses/{response_id}/cancel")

    @staticmethod
    def checked(answer: httpx.Response) -> dict[str, Any]:
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        SdkResponse.model_validate(body)  # the SDK can read it, strictly
        return body


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    """Responses need no OpenAI-Beta header: this client sends the Portkey headers only."""
    headers = {"x-portkey-api-key": "pk-test-secret", "x-portkey-virtual-key": "vk-test-secret"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as http:
        yield http


@pytest.fixture
def api(client: httpx.Client) -> ResponsesApi:
    return ResponsesApi(client)


def statuses(seen: list[dict[str, Any]]) -> list[str]:
    return [response["status"] for response in seen]


def test_a_background_response_starts_queued_and_completes_with_reasoning_and_text(api: ResponsesApi) -> None:
    created = api.background(input="What is 2+2?")
    assert (created["status"], created["background"], created["output"], created["usage"]) == (
        "queued",
        True,
        [],
        None,
    )
    seen = api.until_done(created["id"])
    assert statuses(seen) == ["in_progress", "completed"]
    done = seen[-1]
    assert [item["type"] for item in done["output"]] == ["reasoning", "message"]
    assert SdkResponse.model_validate(done).output_text == "Emulated answer to: What is 2+2?"
    assert done["usage"]["output_tokens_details"]["reasoning_tokens"] == 24
    assert done["completed_at"] is not None


@pytest.mark.parametrize(
    ("model", "ending", "detail"),
    [
        (
            MODEL_FAILS,
            "failed",
            ("error", {"code": "server_error", "message": "Sorry, something went wrong."}),
        ),
        (MODEL_INCOMPLETE, "incomplete", ("incomplete_details", {"reason": "max_output_tokens"})),
        (MODEL_CANCELLED, "cancelled", ("error", None)),
    ],
)
def test_every_terminal_kind_is_scripted_by_model(
    api: ResponsesApi, model: str, ending: str, detail: tuple[str, Any]
) -> None:
    seen = api.until_done(api.background(model)["id"])
    assert statuses(seen) == ["in_progress", ending]
    field, value = detail
    assert seen[-1][field] == value


def test_an_incomplete_response_keeps_the_text_it_had_and_its_usage(api: ResponsesApi) -> None:
    done = api.until_done(api.background(MODEL_INCOMPLETE, input="Tell me a long story")["id"])[-1]
    text = SdkResponse.model_validate(done).output_text
    assert text
    assert "Emulated answer to: Tell me a long story".startswith(text)
    assert done["usage"] is not None


def test_a_tools_response_ends_with_a_function_call(api: ResponsesApi) -> None:
    done = api.until_done(api.background(MODEL_TOOLS)["id"])[-1]
    [call] = done["output"]
    assert (call["type"], call["name"], call["arguments"]) == (
        "function_call",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert call["call_id"].startswith("call_")


def test_without_background_the_answer_is_final_at_once(api: ResponsesApi) -> None:
    answer = api.create()
    assert (answer["status"], answer["background"]) == ("completed", False)
    assert api.cancel(answer["id"]).status_code == 400  # only background responses can be cancelled


def test_a_script_from_the_control_api_walks_its_statuses_per_poll(
    server: EmulatorServer, api: ResponsesApi
) -> None:
    script = {
        "model": "my-model",
        "statuses": ["queued", "queued", "in_progress", "completed"],
        "output": ["message"],
    }
    assert httpx.post(f"{server.url}/_emulator/responses", json=script).status_code == 201
    created = api.background("my-model")
    assert statuses(api.until_done(created["id"])) == ["queued", "in_progress", "completed"]
    summary = httpx.get(f"{server.url}/_emulator/responses").json()
    assert summary["responses_created"] == 1
    assert summary["responses"] == [
        {"id": created["id"], "model": "my-model", "status": "completed", "background": True}
    ]


def test_a_bad_script_is_refused_by_the_control_api(server: EmulatorServer) -> None:
    answer = httpx.post(
        f"{server.url}/_emulator/responses", json={"model": "m", "statuses": ["completed", "queued"]}
    )
    assert answer.status_code == 400
    assert "terminal" in answer.json()["error"]


def test_time_advanced_responses_move_with_the_clock_not_the_polls(
    server: EmulatorServer, api: ResponsesApi, clock: FakeClock
) -> None:
    metadata = {"emulator_advance": "time", "emulator_seconds_per_status": "10"}
    created = api.background(metadata=metadata)
    assert api.get(created["id"])["status"] == "queued"
    clock.advance(10)
    assert api.get(created["id"])["status"] == "in_progress"
    clock.advance(25)
    done = api.get(created["id"])
    assert done["status"] == "completed"
    assert done["metadata"] == metadata  # echoed like any user metadata


def test_cancel_ends_an_active_response_and_leaves_a_finished_one_alone(api: ResponsesApi) -> None:
    slow = api.background(MODEL_SLOW)
    api.get(slow["id"])
    cancelled = api.checked(api.cancel(slow["id"]))
    assert (cancelled["status"], cancelled["output"]) == ("cancelled", [])
    assert api.get(slow["id"])["status"] == "cancelled"
    done = api.until_done(api.background()["id"])[-1]
    assert api.checked(api.cancel(done["id"]))["status"] == "completed"


def test_delete_forgets_the_response(client: httpx.Client, api: ResponsesApi) -> None:
    created = api.background()
    deleted = client.delete(f"/responses/{created['id']}")
    assert deleted.json() == {"id": created["id"], "object": "response", "deleted": True}
    missing = client.get(f"/responses/{created['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == f"Response with id '{created['id']}' not found."
    assert client.delete(f"/responses/{created['id']}").status_code == 404


def test_previous_response_id_continues_a_known_response_only(
    client: httpx.Client, api: ResponsesApi
) -> None:
    first = api.background()
    second = api.background(previous_response_id=first["id"], input="And then?")
    assert second["previous_response_id"] == first["id"]
    unknown = client.post(
        "/responses", json={"model": "m", "input": "x", "previous_response_id": "resp_nope"}
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["param"] == "previous_response_id"


def test_input_items_page_through_every_input(client: httpx.Client, api: ResponsesApi) -> None:
    messages = [{"role": "user", "content": f"message {n}"} for n in range(5)]
    created = api.background(input=messages)
    path = f"/responses/{created['id']}/input_items"
    first = client.get(path, params={"limit": 2, "order": "asc"}).json()
    ResponseItemList.model_validate(first)
    assert first["has_more"] is True
    texts = [item["content"][0]["text"] for item in first["data"]]
    after = first["last_id"]
    while True:
        page = client.get(path, params={"limit": 2, "order": "asc", "after": after}).json()
        ResponseItemList.model_validate(page)
        texts += [item["content"][0]["text"] for item in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert texts == [f"message {n}" for n in range(5)]
    newest_first = client.get(path).json()["data"]  # default order: desc
    assert [item["content"][0]["text"] for item in newest_first] == [
        f"message {n}" for n in reversed(range(5))
    ]
    for item in newest_first:
        TypeAdapter(ResponseItem).validate_python(item)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m", "input": "x", "background": True, "store": False}, "store"),
        ({"model": "m", "input": "x", "stream": True}, "stream"),
        ({"model": "m", "input": "x", "tempreature": 1}, "tempreature"),
        ({"model": "m", "input": 3}, "input"),
        ({"model": "m", "input": "x", "metadata": {"k": 1}}, "metadata.k"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(client: httpx.Client, body: dict[str, Any], param: str) -> None:
    answer = client.post("/responses", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param


def test_faults_apply_to_responses_like_to_steps(
    server: EmulatorServer, api: ResponsesApi, client: httpx.Client
) -> None:
    server.state.add_fault("status", path_contains="/responses", status=503, headers={"Retry-After": "3"})
    refused = client.post("/responses", json={"model": "m", "input": "x", "background": True})
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "3")
    assert server.state.responses.created == 0  # answered before anything was done
    server.state.add_fault("reset_after", path_contains="/responses")
    with pytest.raises(httpx.TransportError):
        client.post("/responses", json={"model": "m", "input": "x", "background": True})
    assert server.state.responses.created == 1  # processed in full, then the answer was lost


def test_the_openai_mode_needs_only_the_bearer_key(openai_server: EmulatorServer) -> None:
    with httpx.Client(base_url=openai_server.base_url, headers=OPENAI_HEADERS) as http:
        created = ResponsesApi(http).background()
    assert created["status"] == "queued"
