"""Pydantic models of the run and run-step API: strict where a sensor decides, lenient elsewhere.

Real responses differ from the published spec (``expires_at`` instead of ``expired_at``, no
``metadata``, tool types the spec does not know), and the self-hosted, OpenAI-compatible servers
Portkey routes this API to bend it further (``null`` lists and token counts, float timestamps, an
error without a message, statuses of their own). The official ``openai`` SDK copies with all of
that, so must a task: only ``id`` and ``status`` (a non-empty string) are required. A status this
provider does not know is kept as its raw string (the known ones are the enums); any other field
that cannot be read is left at its default in the typed view, with one warning per field, and
never fails. Every model keeps unknown fields, and runs and run steps keep the exact JSON they
were parsed from: what goes to XCom is what the API sent.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PlainValidator,
    PrivateAttr,
    Tag,
    ValidationError,
    model_validator,
)

# The statuses live in a dependency-free module (DAG files validate against them); re-exported here.
from airflow_provider_portkey.statuses import TERMINAL_RUN_STATUSES as TERMINAL_RUN_STATUSES
from airflow_provider_portkey.statuses import TERMINAL_STEP_STATUSES as TERMINAL_STEP_STATUSES
from airflow_provider_portkey.statuses import UNSUCCESSFUL_RUN_STATUSES as UNSUCCESSFUL_RUN_STATUSES
from airflow_provider_portkey.statuses import UNSUCCESSFUL_STEP_STATUSES as UNSUCCESSFUL_STEP_STATUSES
from airflow_provider_portkey.statuses import KnownStatus
from airflow_provider_portkey.statuses import RunStatus as RunStatus
from airflow_provider_portkey.statuses import RunStepStatus as RunStepStatus

_log = logging.getLogger(__name__)
#: (model, field) pairs already warned about in this process: a poll loop must not repeat it.
_warned: set[tuple[str, str]] = set()
#: Discriminated unions put their tag into error locations; tags start with this, paths drop them.
_TAG_PREFIX = "type="


def error_path(loc: Sequence[int | str]) -> str:
    """A validation error's location as the JSON path a user reads (``tool_calls.0.function``)."""
    parts = [str(item) for item in loc if not (isinstance(item, str) and item.startswith(_TAG_PREFIX))]
    return ".".join(parts) or "<root>"


class _ApiModel(BaseModel):
    """
    Keeps fields the schema does not (yet) know instead of failing or dropping them.

    A field with a default that cannot be read (a sloppy server's ``null`` or string where the
    spec has a number) falls back to its default with a warning instead of failing the object:
    only the required fields decide whether an answer is usable at all.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    #: Optional fields that still must be right when present (``object``: not a different object).
    _checked: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="wrap")
    @classmethod
    def _skip_unreadable_fields(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        try:
            return handler(data)
        except ValidationError as error:
            optional = {
                name for name, field in cls.model_fields.items() if not field.is_required()
            } - cls._checked
            unreadable = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
            if not isinstance(data, dict) or not unreadable or not unreadable <= optional:
                raise
            for problem in error.errors():
                key = (cls.__name__, error_path(problem["loc"]))
                if key not in _warned:
                    _warned.add(key)
                    _log.warning(
                        "Ignoring %s.%s, which this provider cannot read (%s); the JSON is passed on as sent",
                        cls.__name__,
                        key[1],
                        problem["msg"],
                    )
            return handler({name: value for name, value in data.items() if name not in unreadable})


def _empty_if_null(value: Any) -> Any:
    return [] if value is None else value


#: A list some servers send as ``null`` when it is empty.
NullableList = BeforeValidator(_empty_if_null)
#: Epoch seconds; some servers send floats (``1710353047.5``), kept as they are.
Timestamp = int | float


def _status(known: type[StrEnum]) -> PlainValidator:
    """A status: the enum member when this provider knows it, else the raw string (never empty)."""

    def parse(value: Any) -> StrEnum | str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"a status must be a non-empty string, got {value!r}")
        try:
            return known(value)
        except ValueError:
            return value

    return PlainValidator(parse)


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
    """An API object with a lifecycle (a run, a run step, a response): what its status says about it."""

    # Each subclass declares its own ``status`` field (declared here, pydantic would list it first).
    if TYPE_CHECKING:
        status: KnownStatus | str

    @property
    def known_status(self) -> KnownStatus | None:
        """The status as this provider knows it, or ``None`` for a status it does not know."""
        return self.status if isinstance(self.status, KnownStatus) else None

    @property
    def is_terminal(self) -> bool:
        """True once the object can no longer change; never for a status this provider does not know."""
        known = self.known_status
        return known is not None and known.is_terminal

    @property
    def succeeded(self) -> bool:
        known = self.known_status
        return known is not None and known.succeeded

    def _describe(self, what: str) -> str:
        """``what`` with its status, and the object's ``last_error`` if it has one."""
        text = f"{what} is {self.status}"
        last_error: LastError | None = getattr(self, "last_error", None)
        if last_error is not None:
            text += f": {last_error.code or 'error'}: {last_error.message or '(no message)'}"
        return text


class LastError(_ApiModel):
    code: str | None = None
    message: str | None = None


class Usage(_ApiModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


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
        return _tag_name(kind if kind in known else "unknown")

    return Discriminator(discriminate)


def _tag_name(kind: str) -> str:
    return f"{_TAG_PREFIX}{kind}"


def _tag(kind: str) -> Tag:
    return Tag(_tag_name(kind))


CodeInterpreterOutput = Annotated[
    Annotated[CodeInterpreterLogsOutput, _tag("logs")]
    | Annotated[CodeInterpreterImageOutput, _tag("image")]
    | Annotated[UnknownModel, _tag("unknown")],
    _known_type("logs", "image"),
]


class CodeInterpreter(_ApiModel):
    input: str | None = None
    outputs: Annotated[list[CodeInterpreterOutput], NullableList] = Field(default_factory=list)


class CodeInterpreterToolCall(_ApiModel):
    id: str
    type: Literal["code_interpreter"]
    code_interpreter: CodeInterpreter


class FileSearchRankingOptions(_ApiModel):
    ranker: str
    score_threshold: float


class FileSearchResult(_ApiModel):
    file_id: str
    file_name: str | None = None
    score: float | None = None
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
    Annotated[CodeInterpreterToolCall, _tag("code_interpreter")]
    | Annotated[FileSearchToolCall, _tag("file_search")]
    | Annotated[FunctionToolCall, _tag("function")]
    | Annotated[UnknownToolCall, _tag("unknown")],
    _known_type("code_interpreter", "file_search", "function"),
]


class ToolCallsDetails(_ApiModel):
    type: Literal["tool_calls"]
    tool_calls: Annotated[list[ToolCall], NullableList] = Field(default_factory=list)


StepDetails = Annotated[
    Annotated[MessageCreationDetails, _tag("message_creation")]
    | Annotated[ToolCallsDetails, _tag("tool_calls")]
    | Annotated[UnknownModel, _tag("unknown")],
    _known_type("message_creation", "tool_calls"),
]


class RunStep(_StatusObject):
    """A step in the execution of a run (``object: thread.run.step``)."""

    _checked = frozenset({"object"})

    id: str
    #: May be missing; anything but ``thread.run.step`` is a different object and refused.
    object: Literal["thread.run.step"] | None = None
    status: Annotated[RunStepStatus | str, _status(RunStepStatus)]
    created_at: Timestamp | None = None
    assistant_id: str | None = None
    thread_id: str | None = None
    run_id: str | None = None
    type: str | None = None
    step_details: StepDetails | None = None
    last_error: LastError | None = None
    #: The spec says ``expired_at``; live objects say ``expires_at``. Both are accepted.
    expired_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    cancelled_at: Timestamp | None = None
    failed_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    metadata: dict[str, Any] | None = None
    usage: Usage | None = None

    def describe(self) -> str:
        """One line for logs and failure messages: which step, how it ended, and why."""
        return self._describe(f"run step {self.id} of run {self.run_id} (thread {self.thread_id})")


class RunStepList(_ApiModel):
    """One page of ``GET .../steps``; ``has_more`` is ``None`` when the server leaves it out."""

    _checked = frozenset({"object"})

    object: Literal["list"] | None = None
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool | None = None


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

    _checked = frozenset({"object"})

    id: str
    object: Literal["thread.run"] | None = None
    status: Annotated[RunStatus | str, _status(RunStatus)]
    #: Required like ``id``: a run is addressed by its thread and its id.
    thread_id: str
    assistant_id: str | None = None
    created_at: Timestamp | None = None
    started_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    cancelled_at: Timestamp | None = None
    failed_at: Timestamp | None = None
    completed_at: Timestamp | None = None
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
        text = self._describe(f"run {self.id} (thread {self.thread_id})")
        if self.last_error is not None:
            return text
        if self.incomplete_details is not None and self.incomplete_details.reason:
            text += f": {self.incomplete_details.reason}"
        elif self.requires_action:
            names = ", ".join(call.function.name for call in self.required_tool_calls)
            text += f": waiting for tool outputs ({names or 'no tool calls listed'})"
        return text
