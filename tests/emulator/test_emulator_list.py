"""Listing a run's steps: order, cursor pagination both ways, and parameter validation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_portkey.emulator import SEED_STEP_IDS, EmulatorServer
from airflow_provider_portkey.emulator.app import paginate

NEWEST_FIRST = list(reversed(SEED_STEP_IDS))


def ids(page: dict[str, Any]) -> list[str]:
    return [step["id"] for step in page["data"]]


def walk(client: httpx.Client, path: str, cursor: str, **params: Any) -> list[str]:
    """Follow pages with `after=<last_id>` (or `before=<first_id>`) until has_more is false."""
    seen: list[str] = []
    while True:
        page = client.get(path, params=params).json()
        seen.extend(ids(page))
        if not page["has_more"]:
            return seen
        params[cursor] = page["last_id"] if cursor == "after" else page["first_id"]


def test_default_page_is_newest_first_with_list_envelope(
    client: httpx.Client, step_path: Callable[..., str]
) -> None:
    page = client.get(step_path()).json()
    assert page["object"] == "list"
    assert ids(page) == NEWEST_FIRST
    assert page["first_id"] == NEWEST_FIRST[0]
    assert page["last_id"] == NEWEST_FIRST[-1]
    assert page["has_more"] is False
    assert all(step["object"] == "thread.run.step" for step in page["data"])


@pytest.mark.parametrize(("order", "expected"), [("asc", list(SEED_STEP_IDS)), ("desc", NEWEST_FIRST)])
def test_after_cursor_walks_every_step_once(
    client: httpx.Client, step_path: Callable[..., str], order: str, expected: list[str]
) -> None:
    assert walk(client, step_path(), "after", order=order, limit=2) == expected


@pytest.mark.parametrize(("order", "expected"), [("asc", list(SEED_STEP_IDS)), ("desc", NEWEST_FIRST)])
def test_before_cursor_pages_toward_the_start(
    client: httpx.Client, step_path: Callable[..., str], order: str, expected: list[str]
) -> None:
    page = client.get(step_path(), params={"order": order, "limit": 3, "before": expected[5]}).json()
    assert ids(page) == expected[2:5]
    assert page["has_more"] is True
    page = client.get(step_path(), params={"order": order, "limit": 3, "before": expected[2]}).json()
    assert ids(page) == expected[0:2]
    assert page["has_more"] is False


def test_after_and_before_bound_the_page_on_both_sides(
    client: httpx.Client, step_path: Callable[..., str]
) -> None:
    params = {"order": "asc", "after": SEED_STEP_IDS[1], "before": SEED_STEP_IDS[5]}
    assert ids(client.get(step_path(), params=params).json()) == list(SEED_STEP_IDS[2:5])


def test_unknown_cursor_gives_an_empty_page(client: httpx.Client, step_path: Callable[..., str]) -> None:
    page = client.get(step_path(), params={"after": "step_gone"}).json()
    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize("limit", [1, 100])
def test_limit_bounds_are_accepted(client: httpx.Client, step_path: Callable[..., str], limit: int) -> None:
    page = client.get(step_path(), params={"limit": limit}).json()
    assert len(page["data"]) == min(limit, len(SEED_STEP_IDS))
    assert page["has_more"] is (limit < len(SEED_STEP_IDS))


@pytest.mark.parametrize(
    ("limit", "code"),
    [("0", "integer_below_min_value"), ("101", "integer_above_max_value"), ("ten", "invalid_type")],
)
def test_limit_out_of_range_is_400_naming_limit(
    client: httpx.Client, step_path: Callable[..., str], limit: str, code: str
) -> None:
    response = client.get(step_path(), params={"limit": limit})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "limit"
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid 'limit': ")


def test_unknown_order_is_400_naming_order(client: httpx.Client, step_path: Callable[..., str]) -> None:
    response = client.get(step_path(), params={"order": "newest"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "order"


@pytest.mark.parametrize(("thread_id", "run_id"), [("thread_demo", "run_nope"), ("thread_nope", "run_demo")])
def test_list_of_unknown_run_is_404_no_run_found(
    client: httpx.Client, step_path: Callable[..., str], thread_id: str, run_id: str
) -> None:
    response = client.get(step_path(None, thread_id, run_id))
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"No run found with id '{run_id}'."


def test_steps_added_later_list_first_by_default(
    server: EmulatorServer, client: httpx.Client, step_path: Callable[..., str]
) -> None:
    server.state.add_step("thread_demo", "run_demo", "step_newest")
    assert client.get(step_path(), params={"limit": 1}).json()["first_id"] == "step_newest"


def test_paginate_is_a_plain_function() -> None:
    items = [{"id": f"s{i}"} for i in range(5)]
    page = paginate(items, limit=2, order="desc", after="s3", before=None)
    assert page == {
        "object": "list",
        "data": [{"id": "s2"}, {"id": "s1"}],
        "first_id": "s2",
        "last_id": "s1",
        "has_more": True,
    }
