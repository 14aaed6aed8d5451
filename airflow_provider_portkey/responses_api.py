"""Requests and answers of the Responses API (``/responses``), on the shared protocol.

Plain code with no I/O, like :mod:`airflow_provider_portkey.protocol`, whose building blocks it reuses
(ids, metadata checks, the retry-safety of POSTs, error interpretation): the sync hook and the
triggers' async hook send what these functions build.

Creating a response is a POST that starts paid work: it is retried only when the failure proves
nothing was done (:attr:`ApiRequest.safe_to_repeat` is false for it). Neither OpenAI nor the Portkey
gateway honours an ``Idempotency-Key``, so no key is sent: it would promise a safety it does not give.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from airflow_provider_portkey.errors import PortkeyConfigurationError
from airflow_provider_portkey.models_response import Response, ResponseItemList
from airflow_provider_portkey.protocol import (
    ApiRequest,
    _bad_body,
    _json_body,
    _parse,
    _path,
    page_params,
    validate_id,
    validate_metadata,
)

#: ``include[]`` values look like ``reasoning.encrypted_content`` or ``file_search_call.results``;
#: the upstream's list grows, so the shape is checked, not the value.
_INCLUDE = re.compile(r"[a-z_]+(\.[a-z_]+)+")


def validate_response_include(include: Collection[str] | None) -> tuple[str, ...]:
    """``include[]`` values as a tuple (one string is one value), each a dotted field path."""
    if include is None:
        return ()
    values = (include,) if isinstance(include, str) else tuple(include)
    for value in values:
        if not isinstance(value, str) or not _INCLUDE.fullmatch(value):
            raise PortkeyConfigurationError(
                f"include has {value!r}; expected dotted field paths such as 'reasoning.encrypted_content'"
            )
    return values


def response_body(body: object, *, background: bool = True) -> dict[str, Any]:
    """
    The JSON body of ``POST /responses``, checked before anything is sent.

    ``body`` holds the API's fields by their API names (``model``, ``input``, ``instructions``,
    ``tools``, ``metadata``, ``previous_response_id``...); ``None`` values are left out so that
    templated, unset fields change nothing. ``background`` is set from the argument (a different
    value in the body is refused). Streaming is refused: the response is polled instead.
    """
    if not isinstance(body, Mapping):
        raise _bad_body("body", "must be a mapping of Responses API fields (model, input, ...)", body)
    fields: dict[str, Any] = {name: value for name, value in body.items() if value is not None}
    if not isinstance(background, bool):
        raise _bad_body("background", "must be True or False", background)
    if "background" in fields and fields["background"] is not background:
        raise _bad_body("body['background']", f"contradicts background={background}; pass it once", fields)
    if fields.get("stream"):
        raise _bad_body("body['stream']", "is not supported: the response is polled, not streamed")
    if background and fields.get("store") is False:
        raise _bad_body("body['store']", "must not be false: a background response is stored to be polled")
    if not any(name in fields for name in ("model", "prompt", "previous_response_id")):
        raise _bad_body("body", "needs a 'model' (or a 'prompt' or 'previous_response_id' to take it from)")
    if "model" in fields and (not isinstance(fields["model"], str) or not fields["model"].strip()):
        raise _bad_body("body['model']", "must be a non-empty string", fields["model"])
    if "previous_response_id" in fields:
        validate_id("body['previous_response_id']", fields["previous_response_id"])
    if "metadata" in fields:
        fields["metadata"] = validate_metadata("body['metadata']", fields["metadata"])
    fields["background"] = background
    return _json_body("body", fields)


def create_response_request(body: Mapping[str, Any]) -> ApiRequest:
    """``POST /responses`` (``body`` from :func:`response_body`); never retried blindly."""
    return ApiRequest("POST", "/responses", body=body)


def get_response_request(response_id: object, include: Collection[str] | None = None) -> ApiRequest:
    params = tuple(("include[]", value) for value in validate_response_include(include))
    return ApiRequest("GET", _path("responses", ("response_id", response_id)), params)


def cancel_response_request(response_id: object) -> ApiRequest:
    """``POST /responses/{id}/cancel`` (background responses only); a POST, so not retried blindly."""
    return ApiRequest("POST", _path("responses", ("response_id", response_id), "cancel"))


def delete_response_request(response_id: object) -> ApiRequest:
    return ApiRequest("DELETE", _path("responses", ("response_id", response_id)))


def list_input_items_request(
    response_id: object,
    *,
    limit: int = 100,
    order: str = "asc",
    after: str | None = None,
    include: Collection[str] | None = None,
) -> ApiRequest:
    """One page of ``GET /responses/{id}/input_items``."""
    params = page_params(limit=limit, order=order, after=after)
    params += [("include[]", value) for value in validate_response_include(include)]
    path = _path("responses", ("response_id", response_id), "input_items")
    return ApiRequest("GET", path, tuple(params))


def parse_response(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> Response:
    """A response, or a clear error quoting what came instead."""
    return _parse(request, payload, secrets, Response.from_api)


def parse_item_list(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> ResponseItemList:
    return _parse(request, payload, secrets, ResponseItemList.model_validate)


def parse_deletion(request: ApiRequest, payload: Any, secrets: Collection[str] = ()) -> dict[str, Any]:
    """The answer to a delete (``{"id", "object", "deleted"}``), kept as sent; it must be a JSON object."""
    return _parse(request, payload, secrets, dict)
