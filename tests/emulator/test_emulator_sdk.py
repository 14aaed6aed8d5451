"""The emulator against the official ``openai`` SDK: every answer fits the SDK's types, and the SDK
works as a client of it (threads, runs, steps, messages, pagination), as a user's own scripts would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.pagination import SyncCursorPage
from openai.types.beta import Thread as SdkThread
from openai.types.beta.threads import Message as SdkMessage
from openai.types.beta.threads import Run as SdkRun
from openai.types.beta.threads.runs import RunStep as SdkRunStep
from pydantic import BaseModel

from airflow_provider_portkey.emulator import (
    ASST_DEMO,
    ASST_EXPIRES,
    ASST_FAILS,
    ASST_INCOMPLETE,
    ASST_SLOW,
    ASST_TOOLS,
    SEED_RUN_ID,
    SEED_STEP_IDS,
    SEED_THREAD_ID,
    EmulatorServer,
)
from tests.emulator.conftest import PORTKEY_HEADERS, RunApi

pytestmark = pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning")

PORTKEY_ONLY = {name: value for name, value in PORTKEY_HEADERS.items() if name.startswith("x-portkey")}


@pytest.fixture
def sdk(server: EmulatorServer) -> Iterator[openai.OpenAI]:
    """The SDK pointed at the emulator as at hosted Portkey (the SDK adds OpenAI-Beta itself)."""
    with openai.OpenAI(
        base_url=server.base_url, api_key="sk-unused", default_headers=PORTKEY_ONLY, max_retries=0
    ) as client:
        yield client


def fits(sdk_type: type[BaseModel], answer: Any) -> None:
    """``answer`` validates against the SDK's type (strict pydantic validation, not construct)."""
    sdk_type.model_validate(answer)


def fits_list(sdk_type: type[BaseModel], page: dict[str, Any]) -> None:
    assert page["object"] == "list"
    assert isinstance(page["has_more"], bool)
    for item in page["data"]:
        fits(sdk_type, item)


SCRIPTS = [ASST_DEMO, ASST_TOOLS, ASST_FAILS, ASST_SLOW, ASST_INCOMPLETE, ASST_EXPIRES]


@pytest.mark.parametrize("assistant_id", SCRIPTS)
def test_every_answer_of_a_run_fits_the_sdk_types(client: httpx.Client, assistant_id: str) -> None:
    runs = RunApi(client)
    created = runs.create(assistant_id, thread={"messages": [{"role": "user", "content": "Weather?"}]})
    fits(SdkRun, created)
    thread_id = created["thread_id"]
    for _ in range(8):
        run = runs.get(created)
        fits(SdkRun, run)
        if run["status"] == "requires_action":
            calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
            outputs = [{"tool_call_id": call["id"], "output": "sunny"} for call in calls]
            answer = client.post(runs.path(created, "/submit_tool_outputs"), json={"tool_outputs": outputs})
            fits(SdkRun, answer.json())
        for step in client.get(runs.path(created, "/steps")).json()["data"]:
            fits(SdkRunStep, step)
            fits(SdkRunStep, client.get(runs.path(created, f"/steps/{step['id']}")).json())
        fits_list(SdkMessage, client.get(f"/threads/{thread_id}/messages").json())
        fits_list(SdkRun, client.get(f"/threads/{thread_id}/runs").json())
    fits(SdkThread, client.get(f"/threads/{thread_id}").json())
    if assistant_id == ASST_SLOW:
        fits(SdkRun, client.post(runs.path(created, "/cancel")).json())


def test_every_seeded_step_fits_the_sdk_types_in_each_of_its_statuses(client: httpx.Client) -> None:
    steps = f"/threads/{SEED_THREAD_ID}/runs/{SEED_RUN_ID}/steps"
    for _ in range(4):
        for step_id in SEED_STEP_IDS:
            fits(SdkRunStep, client.get(f"{steps}/{step_id}").json())
        fits_list(SdkRunStep, client.get(steps).json())
    fits(SdkThread, client.get(f"/threads/{SEED_THREAD_ID}").json())


def test_the_sdk_drives_a_tool_run_from_thread_to_answer(sdk: openai.OpenAI) -> None:
    thread = sdk.beta.threads.create(
        messages=[{"role": "user", "content": "Weather in Paris?"}], metadata={"k": "v"}
    )
    assert sdk.beta.threads.retrieve(thread.id).metadata == {"k": "v"}

    run = sdk.beta.threads.runs.create(thread_id=thread.id, assistant_id=ASST_TOOLS)
    while run.status != "requires_action":
        run = sdk.beta.threads.runs.retrieve(run_id=run.id, thread_id=thread.id)
    assert run.required_action is not None
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [call.function.name for call in calls] == ["get_weather"]

    run = sdk.beta.threads.runs.submit_tool_outputs(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": calls[0].id, "output": "sunny"}]
    )
    while run.status not in ("completed", "failed"):
        run = sdk.beta.threads.runs.retrieve(run_id=run.id, thread_id=thread.id)
    assert run.status == "completed"

    steps = list(sdk.beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc", limit=1))
    assert [step.type for step in steps] == ["tool_calls", "message_creation"]
    assert all(step.status == "completed" for step in steps)
    tool_step = steps[0].step_details
    assert tool_step.type == "tool_calls"
    assert tool_step.tool_calls[0].type == "function"
    assert tool_step.tool_calls[0].function.output == "sunny"

    messages = sdk.beta.threads.messages.list(thread_id=thread.id, order="asc")
    assert [message.role for message in messages] == ["user", "assistant"]
    first = messages.data[0].content[0]
    assert first.type == "text"
    assert first.text.value == "Weather in Paris?"
    assert steps[1].step_details.type == "message_creation"
    assert messages.data[1].id == steps[1].step_details.message_creation.message_id

    assert [listed.id for listed in sdk.beta.threads.runs.list(thread_id=thread.id)] == [run.id]


def test_the_sdks_auto_pagination_walks_every_page_of_steps_messages_and_runs(
    server: EmulatorServer, sdk: openai.OpenAI
) -> None:
    for index in range(5):
        server.state.add_step("thread_pages", "run_pages", f"step_{index}", statuses=("completed",))
    page = sdk.beta.threads.runs.steps.list(
        run_id="run_pages", thread_id="thread_pages", limit=2, order="asc"
    )
    assert isinstance(page, SyncCursorPage)
    assert [step.id for step in page.iter_pages().__next__().data] == ["step_0", "step_1"]
    assert [step.id for step in page] == [f"step_{index}" for index in range(5)]
    afters = [dict(r.query).get("after") for r in server.state.requests if r.path.endswith("run_pages/steps")]
    assert afters[-3:] == [None, "step_1", "step_3"]

    thread = sdk.beta.threads.create(messages=[{"role": "user", "content": str(n)} for n in range(5)])
    messages = sdk.beta.threads.messages.list(thread_id=thread.id, limit=2, order="asc")
    texts = [block.text.value for message in messages for block in message.content if block.type == "text"]
    assert texts == ["0", "1", "2", "3", "4"]


def test_an_unknown_thread_is_the_upstreams_404_to_the_sdk(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="No thread found"):
        sdk.beta.threads.retrieve("thread_nope")
    with pytest.raises(openai.NotFoundError):
        sdk.beta.threads.messages.list(thread_id="thread_nope")


def test_the_sdks_cancel_meets_the_gateways_empty_body_500_as_through_real_portkey(
    sdk: openai.OpenAI,
) -> None:
    """The SDK posts cancel typed JSON with no body; the real gateway fails that (the hook sends no type)."""
    run = sdk.beta.threads.create_and_run(assistant_id=ASST_SLOW)
    with pytest.raises(openai.InternalServerError, match="Unexpected end of JSON input"):
        sdk.beta.threads.runs.cancel(run_id=run.id, thread_id=run.thread_id)


def test_the_sdk_cancels_against_an_upstream_directly(openai_server: EmulatorServer) -> None:
    with openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=0) as upstream:
        run = upstream.beta.threads.create_and_run(assistant_id=ASST_SLOW)
        cancelled = upstream.beta.threads.runs.cancel(run_id=run.id, thread_id=run.thread_id)
    assert cancelled.status == "cancelling"
