"""The list endpoints' shared part: `limit`/`order` checked as the upstream checks them, cursor pages.

Steps, messages and runs all page the same way, so a client's pagination loop is exercised alike
on each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_portkey.emulator.responses import Response, json_response, upstream_error


def list_response(items: list[dict[str, Any]], query: Mapping[str, str]) -> Response:
    """One page of `items` (oldest first) for the list query `query`, or its 400 error."""
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        return _invalid_limit(f"expected an integer, but got '{raw_limit}' instead.", "invalid_type")
    if limit < 1:
        detail = f"integer below minimum value. Expected a value >= 1, but got {limit} instead."
        return _invalid_limit(detail, "integer_below_min_value")
    if limit > 100:
        detail = f"integer above maximum value. Expected a value <= 100, but got {limit} instead."
        return _invalid_limit(detail, "integer_above_max_value")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        message = f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'."
        return upstream_error(400, message, param="order", code="invalid_value")
    page = paginate(items, limit=limit, order=order, after=query.get("after"), before=query.get("before"))
    return json_response(200, page)


def paginate(
    items: list[dict[str, Any]], *, limit: int, order: str, after: str | None, before: str | None
) -> dict[str, Any]:
    """Cursor pagination over `items` (oldest first) the way the list endpoints page.

    `after`/`before` are exclusive cursors in the requested order; with only `before`, the page is
    the `limit` items right before it. `has_more` says the window held more than the page.
    An unknown cursor gives an empty page, which ends any pagination loop.
    """
    ordered = items if order == "asc" else items[::-1]
    ids = [item["id"] for item in ordered]
    start, end = 0, len(ordered)
    if after is not None:
        start = ids.index(after) + 1 if after in ids else len(ordered)
    if before is not None:
        end = ids.index(before) if before in ids else 0
    window = ordered[start:end]
    page = window[-limit:] if before is not None and after is None else window[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(window) > len(page),
    }


def _invalid_limit(detail: str, code: str) -> Response:
    return upstream_error(400, f"Invalid 'limit': {detail}", param="limit", code=code)
