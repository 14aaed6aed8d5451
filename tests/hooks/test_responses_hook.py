"""The Responses API through both hooks, against the emulator over real sockets.

Each behaviour runs through the sync hook and the async one (the same core builds and reads every
request), so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from airflow_provider_portkey.emulator import STEP_INSTANT, EmulatorServer
from airflow_provider_portkey.emulator.background import MODEL_FAILS, MODEL_SLOW
from airflow_provider_portkey.errors import (
    InvalidIdError,
    PortkeyBadResponseError,
    PortkeyClientError,
    PortkeyConfigurationError,
    PortkeyConnectionError,
    PortkeyNotFoundError,
)
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook, close_shared_client
from airflow_provider_portkey.models_response import Response
from airflow_provider_portkey.responses_api import create_response_request, response_body
from tests.hooks.support import R, T

pytestmark = pytest.mark.usefixtures("portkey_conn")


HOOKS = ("sync", "async")
BODY = {"model": "emulator-completes", "input": "What is 2+2?"}


@pytest_asyncio.fixture(autouse=True)
async def _close_client_after_each_test() -> AsyncIterator[None]:
    yield
    await close_shared_client()


@pytest.fixture
def waits(mocker: Any) -> list[float]:
    """Record the hooks' retry waits (sync and async) instead of sleeping."""
    recorded: list[float] = []
    mocker.patch("time.sleep", side_effect=recorded.append)
    mocker.patch("asyncio.sleep", side_effect=recorded.append)
    return recorded


def call(kind: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """``hook.method(*args, **kwargs)`` on a sync or an async hook, the result either way."""
    if kind == "sync":
        with PortkeyHook() as hook:
            return getattr(hook, method)(*args, **kwargs)

    async def run() -> Any:
        try:
            outcome: Awaitable[Any] = getattr(PortkeyAsyncHook(), method)(*args, **kwargs)
            return await outcome
        finally:
            await close_shared_client()

    return asyncio.run(run())


def until(predicate: Callable[[Response], bool], poll: Callable[[], Response], limit: int = 10) -> Response:
    for _ in range(limit):
        response = poll()
        if predicate(response):
            return response
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("kind", HOOKS)
def test_create_starts_a_background_response_and_get_follows_it_to_its_text(
    emulator: EmulatorServer, kind: str
) -> None:
    created: Response = call(kind, "create_response", BODY)
    assert (str(created.status), created.background) == ("queued", True)
    [sent] = [r for r in emulator.state.requests if r.method == "POST"]
    assert sent.path == "/v1/responses"
    done = until(lambda r: r.is_terminal, lambda: call(kind, "get_response", created.id))
    assert done.succeeded
    assert done.output_text == "Emulated answer to: What is 2+2?"
    assert done.usage is not None
    assert done.usage.describe() == "input 36 (cached 12), output 87 (reasoning 24), total 123"


@pytest.mark.parametrize("kind", HOOKS)
def test_only_the_assistants_requests_carry_the_assistants_beta_header(
    emulator: EmulatorServer, kind: str
) -> None:
    created: Response = call(kind, "create_response", {**BODY, "model": MODEL_SLOW})
    call(kind, "get_response", created.id)
    call(kind, "list_response_input_items", created.id)
    call(kind, "cancel_response", created.id)
    call(kind, "delete_response", created.id)
    call(kind, "get_run_step", T, R, STEP_INSTANT)
    responses = [r for r in emulator.state.requests if r.path.startswith("/v1/responses")]
    [step] = [r for r in emulator.state.requests if r.path.startswith("/v1/threads")]
    assert [r.method for r in responses] == ["POST", "GET", "GET", "POST", "DELETE"]
    assert [r.headers.get("openai-beta") for r in responses] == [None] * 5
    assert step.headers["openai-beta"] == "assistants=v2"
    # Otherwise the same headers: the beta is the only one a request adds to the connection's.
    shared = ("accept", "user-agent", "x-portkey-api-key", "x-portkey-virtual-key")
    expected = {name: step.headers[name] for name in shared}
    assert [{name: r.headers.get(name) for name in shared} for r in responses] == [expected] * 5


@pytest.mark.parametrize("kind", HOOKS)
def test_a_failed_response_is_read_with_its_error(kind: str) -> None:
    created = call(kind, "create_response", {**BODY, "model": MODEL_FAILS})
    done = until(lambda r: r.is_terminal, lambda: call(kind, "get_response", created.id))
    assert done.describe() == f"response {created.id} is failed: server_error: Sorry, something went wrong."


@pytest.mark.parametrize("kind", HOOKS)
def test_cancel_and_delete(kind: str) -> None:
    created = call(kind, "create_response", {**BODY, "model": MODEL_SLOW})
    assert str(call(kind, "cancel_response", created.id).status) == "cancelled"
    deleted = call(kind, "delete_response", created.id)
    assert deleted == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(PortkeyNotFoundError, match="not found"):
        call(kind, "get_response", created.id)


@pytest.mark.parametrize("kind", HOOKS)
def test_input_items_are_read_across_every_page(kind: str, emulator: EmulatorServer) -> None:
    messages = [{"role": "user", "content": f"message {n}"} for n in range(150)]
    created = call(kind, "create_response", {**BODY, "input": messages})
    items = call(kind, "list_response_input_items", created.id)
    assert [item["content"][0]["text"] for item in items] == [f"message {n}" for n in range(150)]
    pages = [r for r in emulator.state.requests if r.path.endswith("/input_items")]
    assert len(pages) == 2  # 100 per page


@pytest.mark.parametrize("kind", HOOKS)
def test_a_create_the_upstream_refuses_fails_at_once_with_its_words(
    emulator: EmulatorServer, kind: str
) -> None:
    with pytest.raises(PortkeyClientError, match="Supported values are: 'poll' and 'time'"):
        call(kind, "create_response", {**BODY, "metadata": {"emulator_advance": "never"}})
    assert emulator.state.responses.created == 0


@pytest.mark.parametrize("kind", HOOKS)
def test_a_create_whose_answer_was_lost_is_not_sent_again(emulator: EmulatorServer, kind: str) -> None:
    emulator.state.add_fault("reset_after", path_contains="/v1/responses")
    with pytest.raises(PortkeyConnectionError):
        call(kind, "create_response", BODY)
    assert emulator.state.responses.created == 1  # one response, not two


@pytest.mark.parametrize("kind", HOOKS)
def test_a_create_refused_with_503_before_any_work_is_retried(
    emulator: EmulatorServer, kind: str, waits: list[float]
) -> None:
    emulator.state.add_fault("status", path_contains="/v1/responses", status=503, times=2)
    created = call(kind, "create_response", BODY)
    assert str(created.status) == "queued"
    assert emulator.state.responses.created == 1
    assert len(waits) == 2


@pytest.mark.parametrize("kind", HOOKS)
def test_gets_are_retried_through_a_transient_burst(
    emulator: EmulatorServer, kind: str, waits: list[float]
) -> None:
    created = call(kind, "create_response", BODY)
    emulator.state.add_fault("reset", path_contains=f"/responses/{created.id}", times=2)
    assert call(kind, "get_response", created.id).id == created.id
    assert len(waits) == 2


@pytest.mark.parametrize("kind", HOOKS)
def test_a_body_that_is_not_a_response_is_a_clear_error(emulator: EmulatorServer, kind: str) -> None:
    emulator.state.add_fault("malformed", path_contains="/v1/responses/resp_x", body=b'{"id": "resp_x"}')
    with pytest.raises(PortkeyBadResponseError, match="status"):
        call(kind, "get_response", "resp_x")


@pytest.mark.parametrize(
    ("body", "background", "message"),
    [
        ("not a mapping", True, "body must be a mapping"),
        ({"input": "x"}, True, "needs a 'model'"),
        ({**BODY, "stream": True}, True, "stream"),
        ({**BODY, "store": False}, True, "store"),
        ({**BODY, "background": False}, True, "contradicts background=True"),
        ({**BODY, "previous_response_id": "../x"}, True, "previous_response_id"),
        ({**BODY, "metadata": {"k": 1}}, True, "metadata"),
        ({**BODY, "temperature": float("nan")}, True, "plain JSON"),
        ({**BODY, "model": ""}, True, "model"),
    ],
)
def test_a_bad_body_is_refused_before_any_request(
    emulator: EmulatorServer, body: Any, background: bool, message: str
) -> None:
    with pytest.raises(PortkeyConfigurationError, match=message):
        call("sync", "create_response", body, background=background)
    assert emulator.state.requests == []


def test_none_fields_are_left_out_and_background_is_set_from_the_argument() -> None:
    body = response_body({**BODY, "instructions": None}, background=False)
    assert body == {**BODY, "background": False}
    assert not create_response_request(body).safe_to_repeat


@pytest.mark.parametrize("bad", ["", "None", "resp/../x", None])
def test_a_bad_response_id_is_refused_before_any_request(emulator: EmulatorServer, bad: Any) -> None:
    with pytest.raises(InvalidIdError, match="response_id"):
        call("sync", "get_response", bad)
    assert emulator.state.requests == []


def test_include_values_are_sent_as_include_brackets(emulator: EmulatorServer) -> None:
    created = call("sync", "create_response", BODY)
    call("sync", "get_response", created.id, include=["reasoning.encrypted_content"])
    assert emulator.state.requests[-1].query == [("include[]", "reasoning.encrypted_content")]
    with pytest.raises(PortkeyConfigurationError, match="include"):
        call("sync", "get_response", created.id, include=["not a path"])
