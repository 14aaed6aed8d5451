"""Pydantic model of a Responses API ``response``: strict where the wait depends on it, lenient elsewhere.

``id`` and ``status`` decide the wait, so they must be right; everything else (``error``, usage,
output items of any type, fields this provider has never heard of) is read if it makes sense and
otherwise left as ``None`` for the typed view, never failing a task. XCom always gets the JSON
exactly as the API sent it (:meth:`Response.to_json`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from airflow_provider_portkey.models import RunStepList, _ApiModel, _ApiObject
from airflow_provider_portkey.response_status import ResponseStatus as ResponseStatus

_T = TypeVar("_T")


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """The validated value, or ``None`` when it does not fit (the raw JSON still has it)."""
    try:
        return handler(value)
    except ValidationError:
        return None


#: A field that never fails validation: ``None`` when the API sent something unexpected.
Lenient = Annotated[_T | None, WrapValidator(_or_none)]


class ResponseError(_ApiModel):
    """Why a response ``failed`` (``server_error``, ``rate_limit_exceeded``, ``invalid_prompt``...)."""

    code: Lenient[str] = None
    message: Lenient[str] = None


class ResponseIncompleteDetails(_ApiModel):
    """Why a response is ``incomplete`` (``max_output_tokens``, ``content_filter``)."""

    reason: Lenient[str] = None


class InputTokensDetails(_ApiModel):
    cached_tokens: Lenient[int] = None


class OutputTokensDetails(_ApiModel):
    reasoning_tokens: Lenient[int] = None


class ResponseUsage(_ApiModel):
    """Token usage; the ``*_details`` break down cached input and reasoning output tokens."""

    input_tokens: Lenient[int] = None
    input_tokens_details: Lenient[InputTokensDetails] = None
    output_tokens: Lenient[int] = None
    output_tokens_details: Lenient[OutputTokensDetails] = None
    total_tokens: Lenient[int] = None

    def describe(self) -> str:
        """``input 12 (cached 0), output 30 (reasoning 8), total 42`` for the task log."""
        cached = self.input_tokens_details.cached_tokens if self.input_tokens_details else None
        reasoning = self.output_tokens_details.reasoning_tokens if self.output_tokens_details else None
        return (
            f"input {self.input_tokens} (cached {cached}), "
            f"output {self.output_tokens} (reasoning {reasoning}), total {self.total_tokens}"
        )


class OutputItem(_ApiModel):
    """One item of ``output`` (``message``, ``function_call``, ``reasoning``, ...), every field kept."""

    type: Lenient[str] = None
    id: Lenient[str] = None
    content: Lenient[list[Lenient[dict[str, Any]]]] = None


class Response(_ApiObject):
    """A model response (``object: response``), e.g. one started with ``background: true``."""

    id: str = Field(min_length=1)
    object: Lenient[Literal["response"]] = None
    status: ResponseStatus
    created_at: Lenient[float] = None
    model: Lenient[str] = None
    background: Lenient[bool] = None
    previous_response_id: Lenient[str] = None
    error: Lenient[ResponseError] = None
    incomplete_details: Lenient[ResponseIncompleteDetails] = None
    output: Lenient[list[Lenient[OutputItem]]] = None
    usage: Lenient[ResponseUsage] = None
    metadata: Lenient[dict[str, Any]] = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        return self.status.succeeded

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part of every ``message`` item, joined (as the SDKs do)."""
        texts = []
        for item in self.output or []:
            if item is None or item.type != "message":
                continue
            for part in item.content or []:
                if (
                    part is not None
                    and part.get("type") == "output_text"
                    and isinstance(part.get("text"), str)
                ):
                    texts.append(part["text"])
        return "".join(texts)

    def describe(self) -> str:
        """One line for logs and failure messages: which response, its status, and why it ended so."""
        text = f"response {self.id} is {self.status.value}"
        if self.error is not None and (self.error.code or self.error.message):
            text += f": {self.error.code}: {self.error.message}"
        elif self.incomplete_details is not None and self.incomplete_details.reason:
            text += f": {self.incomplete_details.reason}"
        return text


#: One page of ``GET /responses/{id}/input_items``: the page every list endpoint answers with.
ResponseItemList = RunStepList
