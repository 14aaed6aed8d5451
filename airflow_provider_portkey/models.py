"""Pydantic models of the run and run-step API, lenient where the real API is.

Real responses differ from the published spec (``expires_at`` instead of ``expired_at``, no
``metadata``, tool types the spec does not know), so every model keeps unknown fields, and runs
and run steps keep the exact JSON they were parsed from: what goes to XCom is what the API sent.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag

# The statuses live in a dependency-free module (DAG files validate against them); re-exported here.
from airflow_provider_portkey.statuses import TERMINAL_RUN_STATUSES as TERMINAL_RUN_STATUSES
from airflow_provider_portkey.statuses import TERMINAL_STEP_STATUSES as TERMINAL_STEP_STATUSES
from airflow_provider_portkey.statuses import UNSUCCESSFUL_RUN_STATUSES as UNSUCCESSFUL_RUN_STATUSES
from airflow_provider_portkey.statuses import UNSUCCESSFUL_STEP_STATUSES as UNSUCCESSFUL_STEP_STATUSES
from airflow_provider_portkey.statuses import RunStatus as RunStatus
from airflow_provider_portkey.statuses import RunStepStatus as RunStepStatus


class _ApiModel(BaseModel):
    """Keeps fields the schema does not (yet) know instead of failing or dropping them."""

    model_config = ConfigDict(extra="allow", frozen=True)


class _ApiObject(_ApiModel):
    """
    A top-level API object that remembers the JSON it was parsed from.

    Validation may coerce or default values (``null`` lists, numbers as floats); XCom must get
    what the API sent, so :meth:`to_json` returns that, not a re-serialisation of the model.
    """

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_api(cls, payload: dict[str, Any]) -> Self:
        """Parse an API object and remember it verbatim for :meth:`to_json`."""
        parsed = cls.model_validate(payload)
        parsed._raw = copy.deepcopy(payload)
        return parsed

    def to_json(self) -> dict[str, Any]:
        """The object exactly as the API sent it (a copy), ready for XCom."""
        return copy.deepcopy(self._raw) if self._raw else self.model_dump(mode="json", exclude_unset=True)


class _StatusObject(_ApiObject):
    """An API object with a lifecycle (a run, a run step): what its status says about it."""

    # Each subclass declares its own ``status`` field (declared here, pydantic would list it first).
    if TYPE_CHECKING:
        status: RunStatus | RunStepStatus

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        return self.status.succeeded


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


class RunStep(_StatusObject):
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


class RequiredFunctionCall(_ApiModel):
    """The function the model wants called: ``arguments`` is a JSON string, as the API sends it."""

    name: str
    arguments: str


class RequiredToolCall(_ApiModel):
    """One call awaiting an output; its ``id`` is the ``tool_call_id`` to answer with."""

    id: str
    type: Literal["function"]
    function: RequiredFunctionCall


class SubmitToolOutputsAction(_ApiModel):
    tool_calls: list[RequiredToolCall]


class RequiredAction(_ApiModel):
    """What a ``requires_action`` run waits for (today always ``submit_tool_outputs``)."""

    type: str
    submit_tool_outputs: SubmitToolOutputsAction | None = None


class IncompleteDetails(_ApiModel):
    reason: str | None = None


class Run(_StatusObject):
    """An execution of an assistant on a thread (``object: thread.run``)."""

    id: str
    object: Literal["thread.run"]
    status: RunStatus
    thread_id: str
    assistant_id: str | None = None
    created_at: int | None = None
    started_at: int | None = None
    expires_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str | None = None
    metadata: dict[str, Any] | None = None
    usage: Usage | None = None

    @property
    def requires_action(self) -> bool:
        return self.status is RunStatus.REQUIRES_ACTION

    @property
    def required_tool_calls(self) -> list[RequiredToolCall]:
        """The tool calls a ``requires_action`` run waits on (empty in any other status)."""
        action = self.required_action
        if not self.requires_action or action is None or action.submit_tool_outputs is None:
            return []
        return list(action.submit_tool_outputs.tool_calls)

    def describe(self) -> str:
        """One line for logs and failure messages: which run, its status, and why it ended so."""
        text = f"run {self.id} (thread {self.thread_id}) is {self.status.value}"
        if self.last_error is not None:
            text += f": {self.last_error.code}: {self.last_error.message}"
        elif self.incomplete_details is not None and self.incomplete_details.reason:
            text += f": {self.incomplete_details.reason}"
        elif self.requires_action:
            names = ", ".join(call.function.name for call in self.required_tool_calls)
            text += f": waiting for tool outputs ({names or 'no tool calls listed'})"
        return text
