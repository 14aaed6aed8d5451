"""Pydantic model of a Responses API ``response``: strict where the wait depends on it, lenient elsewhere.

The rules are :mod:`airflow_provider_portkey.models`': ``id`` and ``status`` decide the wait, so
they must be there (a status this provider does not know is kept as its string and waited on);
everything else (``error``, usage, output items of any type, fields this provider has never heard
of) is read if it makes sense and otherwise left at its default for the typed view, with one
warning, never failing a task. XCom always gets the JSON exactly as the API sent it
(:meth:`Response.to_json`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from airflow_provider_portkey.models import (
    RunStepList,
    Timestamp,
    _ApiModel,
    _status,
    _StatusObject,
)
from airflow_provider_portkey.statuses import OUTPUT_TEXT_XCOM_KEY, STATUS_XCOM_KEY
from airflow_provider_portkey.statuses import ResponseStatus as ResponseStatus
from airflow_provider_portkey.usage import USAGE_XCOM_KEY


class ResponseError(_ApiModel):
    """Why a response ``failed`` (``server_error``, ``rate_limit_exceeded``, ``invalid_prompt``...)."""

    code: str | None = None
    message: str | None = None


class ResponseIncompleteDetails(_ApiModel):
    """Why a response is ``incomplete`` (``max_output_tokens``, ``content_filter``)."""

    reason: str | None = None


class InputTokensDetails(_ApiModel):
    cached_tokens: int | None = None


class OutputTokensDetails(_ApiModel):
    reasoning_tokens: int | None = None


class ResponseUsage(_ApiModel):
    """Token usage; the ``*_details`` break down cached input and reasoning output tokens."""

    input_tokens: int | None = None
    input_tokens_details: InputTokensDetails | None = None
    output_tokens: int | None = None
    output_tokens_details: OutputTokensDetails | None = None
    total_tokens: int | None = None

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

    type: str | None = None
    id: str | None = None
    content: list[dict[str, Any]] | None = None


class Response(_StatusObject):
    """A model response (``object: response``), e.g. one started with ``background: true``."""

    _checked = frozenset({"object"})

    id: str = Field(min_length=1)
    #: May be missing; anything but ``response`` is a different object and refused.
    object: Literal["response"] | None = None
    status: Annotated[ResponseStatus | str, _status(ResponseStatus)]
    created_at: Timestamp | None = None
    model: str | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    error: ResponseError | None = None
    incomplete_details: ResponseIncompleteDetails | None = None
    output: list[OutputItem] | None = None
    usage: ResponseUsage | None = None
    metadata: dict[str, Any] | None = None

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part of every ``message`` item, joined (as the SDKs do)."""
        return "".join(
            part["text"]
            for item in self.output or []
            if item.type == "message"
            for part in item.content or []
            if part.get("type") == "output_text" and isinstance(part.get("text"), str)
        )

    def xcoms(self) -> dict[str, Any]:
        """
        The XComs pushed besides the JSON, by key: ``status``, ``output_text``, ``usage`` (as sent).

        No ``usage`` key for a response without usage (still running, failed, cancelled): pulling
        it gives ``None`` all the same, and Airflow 3.0 refuses to store a ``None`` XCom. The one
        list, whether a worker pushes them or the triggerer ends the task with them.
        """
        values: dict[str, Any] = {STATUS_XCOM_KEY: str(self.status), OUTPUT_TEXT_XCOM_KEY: self.output_text}
        usage = self.to_json().get("usage")
        if usage is not None:
            values[USAGE_XCOM_KEY] = usage
        return values

    def describe(self) -> str:
        """One line for logs and failure messages: which response, its status, and why it ended so."""
        text = self._describe(f"response {self.id}")
        if self.error is not None and (self.error.code or self.error.message):
            text += f": {self.error.code or 'error'}: {self.error.message or '(no message)'}"
        elif self.incomplete_details is not None and self.incomplete_details.reason:
            text += f": {self.incomplete_details.reason}"
        return text


#: One page of ``GET /responses/{id}/input_items``: the page every list endpoint answers with.
ResponseItemList = RunStepList
