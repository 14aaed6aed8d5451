"""Pydantic models of the run-step API, lenient where the real API is.

Real responses differ from the published spec (``expires_at`` instead of ``expired_at``, no
``metadata``, tool types the spec does not know), so every model keeps unknown fields and the
run step keeps the exact JSON it was parsed from: what goes to XCom is what the API sent.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag


class _ApiModel(BaseModel):
    """Keeps fields the schema does not (yet) know instead of failing or dropping them."""

    model_config = ConfigDict(extra="allow", frozen=True)


class RunStepStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """True once the step can no longer change."""
        return self is not RunStepStatus.IN_PROGRESS

    @property
    def succeeded(self) -> bool:
        return self is RunStepStatus.COMPLETED


TERMINAL_STEP_STATUSES: frozenset[RunStepStatus] = frozenset(s for s in RunStepStatus if s.is_terminal)
UNSUCCESSFUL_STEP_STATUSES: frozenset[RunStepStatus] = TERMINAL_STEP_STATUSES - {RunStepStatus.COMPLETED}


class LastError(_ApiModel):
    code: str
    message: str


class Usage(_ApiModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class MessageCreation(_ApiModel):
    message_id: str


class MessageCreationDetails(_ApiModel):
    type: Literal["message_creation"]
    message_creation: MessageCreation


class CodeInterpreterLogsOutput(_ApiModel):
    type: Literal["logs"]
    logs: str


class ImageFile(_ApiModel):
    file_id: str


class CodeInterpreterImageOutput(_ApiModel):
    type: Literal["image"]
    image: ImageFile


class UnknownModel(_ApiModel):
    """Anything with a ``type`` this provider does not know yet; its fields are all kept."""

    type: str


def _known_type(*known: str) -> Any:
    """Discriminate on ``type`` and route unknown types to the ``unknown`` fallback model."""

    def discriminate(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return kind if kind in known else "unknown"

    return Discriminator(discriminate)


CodeInterpreterOutput = Annotated[
    Annotated[CodeInterpreterLogsOutput, Tag("logs")]
    | Annotated[CodeInterpreterImageOutput, Tag("image")]
    | Annotated[UnknownModel, Tag("unknown")],
    _known_type("logs", "image"),
]


class CodeInterpreter(_ApiModel):
    input: str
    outputs: list[CodeInterpreterOutput] = Field(default_factory=list)


class CodeInterpreterToolCall(_ApiModel):
    id: str
    type: Literal["code_interpreter"]
    code_interpreter: CodeInterpreter


class FileSearchRankingOptions(_ApiModel):
    ranker: str
    score_threshold: float


class FileSearchResult(_ApiModel):
    file_id: str
    file_name: str
    score: float
    content: list[dict[str, Any]] | None = None


class FileSearch(_ApiModel):
    ranking_options: FileSearchRankingOptions | None = None
    results: list[FileSearchResult] | None = None


class FileSearchToolCall(_ApiModel):
    id: str
    type: Literal["file_search"]
    file_search: FileSearch


class FunctionCall(_ApiModel):
    name: str
    arguments: str
    #: ``None`` until the tool outputs are submitted.
    output: str | None = None


class FunctionToolCall(_ApiModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class UnknownToolCall(UnknownModel):
    """A tool type this provider does not know (older SDKs still send ``retrieval``)."""

    id: str | None = None


ToolCall = Annotated[
    Annotated[CodeInterpreterToolCall, Tag("code_interpreter")]
    | Annotated[FileSearchToolCall, Tag("file_search")]
    | Annotated[FunctionToolCall, Tag("function")]
    | Annotated[UnknownToolCall, Tag("unknown")],
    _known_type("code_interpreter", "file_search", "function"),
]


class ToolCallsDetails(_ApiModel):
    type: Literal["tool_calls"]
    tool_calls: list[ToolCall] = Field(default_factory=list)


StepDetails = Annotated[
    Annotated[MessageCreationDetails, Tag("message_creation")]
    | Annotated[ToolCallsDetails, Tag("tool_calls")]
    | Annotated[UnknownModel, Tag("unknown")],
    _known_type("message_creation", "tool_calls"),
]


class RunStep(_ApiModel):
    """A step in the execution of a run (``object: thread.run.step``)."""

    id: str
    object: Literal["thread.run.step"]
    status: RunStepStatus
    created_at: int | None = None
    assistant_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    type: str | None = None
    step_details: StepDetails | None = None
    last_error: LastError | None = None
    #: The spec says ``expired_at``; live objects say ``expires_at``. Both are accepted.
    expired_at: int | None = None
    expires_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    metadata: dict[str, Any] | None = None
    usage: Usage | None = None

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_api(cls, payload: dict[str, Any]) -> RunStep:
        """Parse an API object and remember it verbatim for :meth:`to_json`."""
        step = cls.model_validate(payload)
        step._raw = copy.deepcopy(payload)
        return step

    def to_json(self) -> dict[str, Any]:
        """The step exactly as the API sent it (a copy), ready for XCom."""
        return copy.deepcopy(self._raw) if self._raw else self.model_dump(mode="json", exclude_unset=True)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        return self.status.succeeded

    def describe(self) -> str:
        """One line for logs and failure messages: which step, how it ended, and why."""
        text = f"run step {self.id} of run {self.run_id} (thread {self.thread_id}) is {self.status.value}"
        if self.last_error is not None:
            text += f": {self.last_error.code}: {self.last_error.message}"
        return text


class RunStepList(_ApiModel):
    """One page of ``GET .../steps``."""

    object: Literal["list"]
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
