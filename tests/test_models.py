"""The run-step models: every reference example parses, nothing is lost, leniency where the API is."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from airflow_provider_portkey.models import (
    TERMINAL_STEP_STATUSES,
    UNSUCCESSFUL_STEP_STATUSES,
    CodeInterpreterImageOutput,
    CodeInterpreterLogsOutput,
    CodeInterpreterToolCall,
    FileSearchToolCall,
    FunctionToolCall,
    MessageCreationDetails,
    RunStep,
    RunStepList,
    RunStepStatus,
    ToolCallsDetails,
    UnknownModel,
    UnknownToolCall,
)

EXAMPLES = Path(__file__).parent / "data" / "openai-spec-examples"
EXAMPLE_FILES = sorted(path for path in EXAMPLES.glob("*.json") if path.name != "INDEX.json")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def same_json(a: Any, b: Any) -> bool:
    """Equal including key order, as the JSON text a user would see."""
    return json.dumps(a) == json.dumps(b)


def test_the_reference_examples_are_all_there() -> None:
    listed = {entry["file"] for entry in json.loads((EXAMPLES / "INDEX.json").read_text())}
    assert {path.name for path in EXAMPLE_FILES} == listed
    assert len(EXAMPLE_FILES) >= 13


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.stem)
def test_every_reference_example_parses_and_round_trips_exactly(path: Path) -> None:
    original = json.loads(path.read_text())
    payload = copy.deepcopy(original)
    if original["object"] == "list":
        page = RunStepList.model_validate(payload)
        assert same_json(page.model_dump(mode="json", exclude_unset=True), original)
        steps = [RunStep.from_api(item) for item in page.data]
        assert [step.id for step in steps] == [item["id"] for item in original["data"]]
        for step, item in zip(steps, original["data"], strict=True):
            assert same_json(step.to_json(), item)
    else:
        step = RunStep.from_api(payload)
        assert isinstance(step.status, RunStepStatus)
        assert step.id == original["id"]
        assert same_json(step.to_json(), original)
        # without the remembered raw JSON, the model itself still dumps the same keys and values
        assert RunStep.model_validate(original).to_json() == original
    assert payload == original  # parsing does not alter the caller's dict


def test_to_json_is_a_copy_that_callers_cannot_use_to_change_the_step() -> None:
    step = RunStep.from_api(load("01_verbatim_spec_getRunStep_message_creation_completed.json"))
    dumped = step.to_json()
    dumped["step_details"]["message_creation"]["message_id"] = "changed"
    assert step.to_json()["step_details"]["message_creation"]["message_id"] == "msg_abc123"


def test_expires_at_from_live_objects_and_expired_at_from_the_spec_are_both_kept() -> None:
    live = RunStep.from_api(load("03_verbatim_spec_stream_message_creation_in_progress.json"))
    assert live.expires_at == 1710348675
    assert "expired_at" not in live.to_json()
    spec = RunStep.from_api(load("01_verbatim_spec_getRunStep_message_creation_completed.json"))
    assert spec.expired_at is None
    assert "expired_at" in spec.to_json()
    assert "expires_at" not in spec.to_json()


def test_missing_metadata_and_null_usage_are_accepted() -> None:
    data = load("03_verbatim_spec_stream_message_creation_in_progress.json")
    assert "metadata" not in data
    step = RunStep.from_api(data)
    assert step.metadata is None
    assert step.usage is None
    assert step.to_json()["usage"] is None


def test_typed_details_message_creation() -> None:
    step = RunStep.from_api(load("07_verbatim_captured_message_creation_completed.json"))
    assert isinstance(step.step_details, MessageCreationDetails)
    assert step.step_details.message_creation.message_id == "msg_zKgPBqNcqb7qYP2bBA3tVyTd"
    assert step.usage is not None
    assert step.usage.prompt_tokens is not None
    assert step.usage.completion_tokens is not None
    assert step.usage.total_tokens == step.usage.prompt_tokens + step.usage.completion_tokens


def test_typed_details_code_interpreter_logs_and_image() -> None:
    step = RunStep.from_api(load("10_composed_code_interpreter_logs_and_image_completed.json"))
    assert isinstance(step.step_details, ToolCallsDetails)
    (call,) = step.step_details.tool_calls
    assert isinstance(call, CodeInterpreterToolCall)
    kinds = tuple(type(output) for output in call.code_interpreter.outputs)
    assert kinds == (CodeInterpreterLogsOutput, CodeInterpreterImageOutput)


def test_typed_details_function_output_filled_after_submit() -> None:
    step = RunStep.from_api(load("05_verbatim_spec_stream_tool_calls_function_completed.json"))
    assert isinstance(step.step_details, ToolCallsDetails)
    (call,) = step.step_details.tool_calls
    assert isinstance(call, FunctionToolCall)
    assert call.function.name == "get_current_weather"
    assert call.function.output is not None
    pending = RunStep.from_api(load("14_composed_cancelled.json"))
    assert isinstance(pending.step_details, ToolCallsDetails)
    assert isinstance(pending.step_details.tool_calls[0], FunctionToolCall)
    assert pending.step_details.tool_calls[0].function.output is None


def test_typed_details_file_search_empty_and_with_ranking_options_and_results() -> None:
    minimal = RunStep.from_api(load("12_composed_file_search_minimal_no_results.json"))
    assert isinstance(minimal.step_details, ToolCallsDetails)
    (call,) = minimal.step_details.tool_calls
    assert isinstance(call, FileSearchToolCall)
    assert call.file_search.results is None
    full = copy.deepcopy(load("12_composed_file_search_minimal_no_results.json"))
    full["step_details"]["tool_calls"][0]["file_search"] = {
        "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0},
        "results": [
            {
                "file_id": "file_1",
                "file_name": "a.md",
                "score": 0.93,
                "content": [{"type": "text", "text": "hello"}],
            }
        ],
    }
    step = RunStep.from_api(full)
    assert isinstance(step.step_details, ToolCallsDetails)
    found = step.step_details.tool_calls[0]
    assert isinstance(found, FileSearchToolCall)
    assert found.file_search.ranking_options is not None
    assert found.file_search.ranking_options.ranker == "default_2024_08_21"
    assert found.file_search.results is not None
    assert found.file_search.results[0].score == 0.93
    assert same_json(step.to_json(), full)


def test_last_error_is_typed_on_failed_steps() -> None:
    step = RunStep.from_api(load("16_composed_failed_rate_limit_exceeded.json"))
    assert step.last_error is not None
    assert step.last_error.code == "rate_limit_exceeded"
    assert "rate_limit_exceeded" in step.describe()


def test_unknown_fields_are_kept_at_every_level() -> None:
    data = load("05_verbatim_spec_stream_tool_calls_function_completed.json")
    data["brand_new_field"] = {"nested": [1, 2]}
    data["usage"]["prompt_token_details"] = {"cached_tokens": 3}
    data["step_details"]["tool_calls"][0]["function"]["strict"] = True
    data["step_details"]["future"] = "x"
    step = RunStep.from_api(copy.deepcopy(data))
    assert same_json(step.to_json(), data)
    assert step.model_extra == {"brand_new_field": {"nested": [1, 2]}}
    assert RunStep.model_validate(data).to_json() == data


def test_unknown_tool_call_type_retrieval_is_kept_not_rejected() -> None:
    data = load("04_verbatim_spec_stream_tool_calls_in_progress_empty.json")
    data["step_details"]["tool_calls"] = [
        {"id": "call_r", "type": "retrieval", "retrieval": {}},
        {"type": "web_browser", "web_browser": {"url": "https://example.com"}},
    ]
    step = RunStep.from_api(copy.deepcopy(data))
    assert isinstance(step.step_details, ToolCallsDetails)
    retrieval, browser = step.step_details.tool_calls
    assert isinstance(retrieval, UnknownToolCall)
    assert (retrieval.type, retrieval.id) == ("retrieval", "call_r")
    assert isinstance(browser, UnknownToolCall)
    assert browser.model_extra == {"web_browser": {"url": "https://example.com"}}
    assert same_json(step.to_json(), data)
    assert RunStep.model_validate(data).to_json() == data


def test_unknown_step_details_and_code_interpreter_output_types_are_kept() -> None:
    data = load("10_composed_code_interpreter_logs_and_image_completed.json")
    data["step_details"]["tool_calls"][0]["code_interpreter"]["outputs"].append({"type": "chart", "c": 1})
    step = RunStep.from_api(copy.deepcopy(data))
    assert isinstance(step.step_details, ToolCallsDetails)
    call = step.step_details.tool_calls[0]
    assert isinstance(call, CodeInterpreterToolCall)
    assert isinstance(call.code_interpreter.outputs[-1], UnknownModel)
    other = load("01_verbatim_spec_getRunStep_message_creation_completed.json")
    other["step_details"] = {"type": "reasoning", "summary": "..."}
    reasoning = RunStep.from_api(copy.deepcopy(other))
    assert isinstance(reasoning.step_details, UnknownModel)
    assert reasoning.step_details.type == "reasoning"
    assert same_json(reasoning.to_json(), other)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"object": "thread.run"}, "object"),
        ({"status": ""}, "status"),
        ({"status": None}, "status"),
        ({"id": None}, "id"),
    ],
)
def test_what_is_not_a_run_step_is_rejected(change: dict[str, Any], field: str) -> None:
    data = {**load("01_verbatim_spec_getRunStep_message_creation_completed.json"), **change}
    with pytest.raises(ValidationError) as caught:
        RunStep.from_api(data)
    assert field in str(caught.value)


@pytest.mark.parametrize("missing", ["id", "status"])
def test_missing_required_run_step_fields_are_rejected(missing: str) -> None:
    data = load("01_verbatim_spec_getRunStep_message_creation_completed.json")
    del data[missing]
    with pytest.raises(ValidationError, match=missing):
        RunStep.from_api(data)


@pytest.mark.parametrize(
    ("status", "terminal", "succeeded"),
    [
        ("in_progress", False, False),
        ("completed", True, True),
        ("failed", True, False),
        ("cancelled", True, False),
        ("expired", True, False),
    ],
)
def test_status_enum_is_terminal_and_succeeded(status: str, terminal: bool, succeeded: bool) -> None:
    value = RunStepStatus(status)
    assert (value.is_terminal, value.succeeded) == (terminal, succeeded)
    assert (value in TERMINAL_STEP_STATUSES) is terminal
    assert (value in UNSUCCESSFUL_STEP_STATUSES) is (terminal and not succeeded)
    step = RunStep.from_api(
        {**load("03_verbatim_spec_stream_message_creation_in_progress.json"), "status": status}
    )
    assert (step.is_terminal, step.succeeded) == (terminal, succeeded)
    assert step.status == status  # a StrEnum compares equal to the API's string


def test_the_status_enum_covers_exactly_the_documented_step_statuses() -> None:
    assert {status.value for status in RunStepStatus} == {
        "in_progress",
        "cancelled",
        "failed",
        "completed",
        "expired",
    }


def test_models_are_frozen() -> None:
    step = RunStep.from_api(load("01_verbatim_spec_getRunStep_message_creation_completed.json"))
    with pytest.raises(ValidationError):
        step.status = RunStepStatus.FAILED  # type: ignore[misc]


def test_list_page_fields() -> None:
    page = RunStepList.model_validate(load("17_composed_list_page_has_more.json"))
    assert page.has_more is True
    assert page.last_id == page.data[-1]["id"]
    with pytest.raises(ValidationError, match="object"):
        RunStepList.model_validate({"object": "thread.run.step", "data": []})


def test_the_statuses_module_imports_nothing_of_the_provider() -> None:
    """statuses.py is the dependency-free base models.py builds on: no import back (not even for typing)."""
    import ast

    import airflow_provider_portkey.statuses as statuses

    tree = ast.parse(Path(statuses.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("airflow_provider_portkey")]
