"""The header checks, in the order hosted Portkey and an OpenAI-compatible upstream apply them."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from airflow_provider_portkey.emulator import STEP_INSTANT, EmulatorServer
from tests.emulator.conftest import OPENAI_HEADERS

BETA = {"OpenAI-Beta": "assistants=v2"}
INVALID_API_KEY = {
    "error": {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
INVALID_BETA = {
    "error": {
        "message": "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
        "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_beta",
    }
}


def test_missing_portkey_api_key_is_401_api_key_not_found(
    bare_client: httpx.Client, step_path: Callable[..., str]
) -> None:
    response = bare_client.get(step_path(STEP_INSTANT), headers={"x-portkey-virtual-key": "vk", **BETA})
    assert response.status_code == 401
    assert response.json() == {"status": "failure", "message": "Portkey API Key Not Found"}


def test_api_key_is_checked_before_the_beta_header(
    bare_client: httpx.Client, step_path: Callable[..., str]
) -> None:
    response = bare_client.get(step_path(STEP_INSTANT))
    assert response.status_code == 401
    assert response.json()["message"] == "Portkey API Key Not Found"


def test_unlisted_api_key_is_401_invalid_when_keys_are_configured(
    server: EmulatorServer, bare_client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.api_keys = frozenset({"pk-good"})
    headers = {"x-portkey-virtual-key": "vk", **BETA}

    wrong = bare_client.get(step_path(STEP_INSTANT), headers={"x-portkey-api-key": "pk-bad", **headers})
    right = bare_client.get(step_path(STEP_INSTANT), headers={"x-portkey-api-key": "pk-good", **headers})

    assert wrong.status_code == 401
    assert wrong.json() == {"status": "failure", "message": "Invalid API Key"}
    assert right.status_code == 200


def test_no_routing_header_is_400_config_or_provider_required(
    bare_client: httpx.Client, step_path: Callable[..., str]
) -> None:
    response = bare_client.get(step_path(STEP_INSTANT), headers={"x-portkey-api-key": "pk", **BETA})
    assert response.status_code == 400
    assert response.json() == {
        "status": "failure",
        "message": "Either x-portkey-config or x-portkey-provider header is required",
    }


@pytest.mark.parametrize("beta", [None, "assistants=v2", "assistants=v1", "unknown=v9"])
def test_responses_need_no_beta_header_and_ignore_any_beta_given(
    bare_client: httpx.Client, beta: str | None
) -> None:
    """As upstream: only the Assistants API requires its beta; other endpoints ignore beta values."""
    headers = {"x-portkey-api-key": "pk", "x-portkey-virtual-key": "vk"}
    if beta is not None:
        headers["OpenAI-Beta"] = beta
    body = {"model": "emulator-completes", "input": "hi", "background": True}
    created = bare_client.post("/responses", json=body, headers=headers)
    assert created.status_code == 200, created.text
    assert bare_client.get(f"/responses/{created.json()['id']}", headers=headers).status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer undefined", "Bearer", "Basic c2s6"])
def test_provider_without_a_bearer_key_is_401_invalid_api_key(
    bare_client: httpx.Client, step_path: Callable[..., str], authorization: str | None
) -> None:
    headers = {"x-portkey-api-key": "pk", "x-portkey-provider": "openai", **BETA}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = bare_client.get(step_path(STEP_INSTANT), headers=headers)
    assert response.status_code == 401
    assert response.json() == INVALID_API_KEY


@pytest.mark.parametrize(
    "routing",
    [
        {"x-portkey-virtual-key": "vk"},
        {"x-portkey-config": "pc-config-1"},
        {"x-portkey-provider": "openai", "Authorization": "Bearer sk-1"},
        {"x-portkey-provider": "openai", "x-portkey-config": '{"retry":{"attempts":2}}'},
    ],
    ids=["virtual-key", "config", "provider-with-bearer", "provider-with-config"],
)
def test_each_routing_choice_is_accepted(
    bare_client: httpx.Client, step_path: Callable[..., str], routing: dict[str, str]
) -> None:
    response = bare_client.get(
        step_path(STEP_INSTANT), headers={"x-portkey-api-key": "pk", **routing, **BETA}
    )
    assert response.status_code == 200


def test_missing_beta_header_is_400_invalid_beta(
    bare_client: httpx.Client, step_path: Callable[..., str]
) -> None:
    headers = {"x-portkey-api-key": "pk", "x-portkey-virtual-key": "vk", "OpenAI-Beta": "assistants=v1"}
    response = bare_client.get(step_path(STEP_INSTANT), headers=headers)
    assert response.status_code == 400
    assert response.json() == INVALID_BETA


def test_beta_header_may_list_several_betas(bare_client: httpx.Client, step_path: Callable[..., str]) -> None:
    headers = {
        "x-portkey-api-key": "pk",
        "x-portkey-virtual-key": "vk",
        "OpenAI-Beta": "other=v1, assistants=v2",
    }
    assert bare_client.get(step_path(STEP_INSTANT), headers=headers).status_code == 200


@pytest.mark.parametrize("authorization", [None, "Bearer undefined", "Bearer"])
def test_openai_mode_without_a_bearer_key_is_401_invalid_api_key(
    openai_server: EmulatorServer, step_path: Callable[..., str], authorization: str | None
) -> None:
    headers = dict(BETA) if authorization is None else {"Authorization": authorization, **BETA}
    response = httpx.get(openai_server.base_url + step_path(STEP_INSTANT), headers=headers)
    assert response.status_code == 401
    assert response.json() == INVALID_API_KEY


def test_openai_mode_needs_no_portkey_headers(
    openai_server: EmulatorServer, step_path: Callable[..., str]
) -> None:
    response = httpx.get(openai_server.base_url + step_path(STEP_INSTANT), headers=OPENAI_HEADERS)
    assert response.status_code == 200
    assert response.json()["id"] == STEP_INSTANT


def test_openai_mode_missing_beta_header_is_400_invalid_beta(
    openai_server: EmulatorServer, step_path: Callable[..., str]
) -> None:
    headers = {"Authorization": "Bearer sk-1"}
    response = httpx.get(openai_server.base_url + step_path(STEP_INSTANT), headers=headers)
    assert response.status_code == 400
    assert response.json() == INVALID_BETA


def test_every_response_carries_a_request_id(
    bare_client: httpx.Client, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    responses = [
        bare_client.get(step_path(STEP_INSTANT)),
        client.get(step_path(STEP_INSTANT)),
        client.get("/nope"),
    ]
    assert [r.status_code for r in responses] == [401, 200, 404]
    request_ids = [r.headers["x-request-id"] for r in responses]
    assert all(rid.startswith("req_") and len(rid) > 8 for rid in request_ids)
    assert len(set(request_ids)) == 3


def test_portkey_mode_echoes_the_trace_id_or_makes_one(
    client: httpx.Client, step_path: Callable[..., str]
) -> None:
    echoed = client.get(step_path(STEP_INSTANT), headers={"x-portkey-trace-id": "trace-123"})
    generated = client.get(step_path(STEP_INSTANT))
    assert echoed.headers["x-portkey-trace-id"] == "trace-123"
    assert generated.headers["x-portkey-trace-id"]


def test_openai_mode_sends_no_trace_id(openai_server: EmulatorServer, step_path: Callable[..., str]) -> None:
    response = httpx.get(openai_server.base_url + step_path(STEP_INSTANT), headers=OPENAI_HEADERS)
    assert "x-portkey-trace-id" not in response.headers
    assert response.headers["x-request-id"].startswith("req_")


def test_readiness_root_needs_no_headers(server: EmulatorServer) -> None:
    assert httpx.get(server.url + "/").status_code == 200
