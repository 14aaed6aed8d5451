"""The official ``openai`` SDK's types as the oracle of what a valid run step and run look like.

Hypothesis builds steps and runs (every tool-call kind, usage, errors, every status); each one is
first accepted by the SDK's own pydantic types, so it is a valid API object, then parsed by the
provider, which must keep every value the SDK reads (the typed view) and hand on the JSON as sent.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.beta.threads import Run as SdkRun
from openai.types.beta.threads.runs import RunStep as SdkRunStep

from airflow_provider_portkey.models import Run, RunStatus, RunStep, RunStepStatus

ids = st.from_regex(r"[a-z]{2,5}_[A-Za-z0-9]{1,24}", fullmatch=True)
texts = st.text(max_size=40)
timestamps = st.integers(min_value=0, max_value=2**33)
optional_timestamps = st.none() | timestamps
tokens = st.integers(min_value=0, max_value=10**7)
metadata = st.none() | st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20), max_size=4)


def usage() -> st.SearchStrategy[dict[str, int] | None]:
    return st.none() | st.fixed_dictionaries(
        {"prompt_tokens": tokens, "completion_tokens": tokens, "total_tokens": tokens}
    )


def last_error(codes: list[str]) -> st.SearchStrategy[dict[str, str] | None]:
    return st.none() | st.fixed_dictionaries({"code": st.sampled_from(codes), "message": texts})


code_interpreter_outputs = st.lists(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("logs"), "logs": texts}),
        st.fixed_dictionaries({"type": st.just("image"), "image": st.fixed_dictionaries({"file_id": ids})}),
    ),
    max_size=3,
)
file_search_results = st.lists(
    st.fixed_dictionaries(
        {"file_id": ids, "file_name": texts, "score": st.floats(0, 1)},
        optional={
            "content": st.lists(
                st.fixed_dictionaries({}, optional={"type": st.just("text"), "text": texts}), max_size=2
            )
        },
    ),
    max_size=3,
)
tool_calls = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "id": ids,
                "type": st.just("code_interpreter"),
                "code_interpreter": st.fixed_dictionaries(
                    {"input": texts, "outputs": code_interpreter_outputs}
                ),
            }
        ),
        st.fixed_dictionaries(
            {
                "id": ids,
                "type": st.just("file_search"),
                "file_search": st.fixed_dictionaries(
                    {},
                    optional={
                        "ranking_options": st.fixed_dictionaries(
                            {
                                "ranker": st.sampled_from(["auto", "default_2024_08_21"]),
                                "score_threshold": st.floats(0, 1),
                            }
                        ),
                        "results": file_search_results,
                    },
                ),
            }
        ),
        st.fixed_dictionaries(
            {
                "id": ids,
                "type": st.just("function"),
                "function": st.fixed_dictionaries(
                    {"name": texts, "arguments": texts, "output": st.none() | texts}
                ),
            }
        ),
    ),
    max_size=4,
)
step_details = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("message_creation"), "message_creation": st.fixed_dictionaries({"message_id": ids})}
    ),
    st.fixed_dictionaries({"type": st.just("tool_calls"), "tool_calls": tool_calls}),
)


@st.composite
def run_steps(draw: st.DrawFn) -> dict[str, Any]:
    details = draw(step_details)
    return draw(
        st.fixed_dictionaries(
            {
                "id": ids,
                "object": st.just("thread.run.step"),
                "created_at": timestamps,
                "assistant_id": ids,
                "thread_id": ids,
                "run_id": ids,
                "type": st.just(details["type"]),
                "status": st.sampled_from([str(status) for status in RunStepStatus]),
                "step_details": st.just(details),
                "last_error": last_error(["server_error", "rate_limit_exceeded"]),
                "cancelled_at": optional_timestamps,
                "completed_at": optional_timestamps,
                "failed_at": optional_timestamps,
                "usage": usage(),
            },
            optional={
                "expired_at": optional_timestamps,
                "expires_at": optional_timestamps,
                "metadata": metadata,
            },
        )
    )


function_tools = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": ids}, optional={"description": texts}),
    }
)
required_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": ids,
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": texts, "arguments": texts}),
        }
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def runs(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(st.sampled_from([str(status) for status in RunStatus]))
    action = None
    if status == "requires_action":
        action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": draw(required_calls)}}
    return draw(
        st.fixed_dictionaries(
            {
                "id": ids,
                "object": st.just("thread.run"),
                "created_at": timestamps,
                "assistant_id": ids,
                "thread_id": ids,
                "status": st.just(status),
                "started_at": optional_timestamps,
                "expires_at": optional_timestamps,
                "cancelled_at": optional_timestamps,
                "failed_at": optional_timestamps,
                "completed_at": optional_timestamps,
                "required_action": st.just(action),
                "last_error": last_error(["server_error", "rate_limit_exceeded", "invalid_prompt"]),
                "model": texts,
                "instructions": texts,
                "tools": st.lists(
                    st.one_of(
                        st.fixed_dictionaries({"type": st.sampled_from(["code_interpreter", "file_search"])}),
                        function_tools,
                    ),
                    max_size=3,
                ),
                "parallel_tool_calls": st.booleans(),
                "incomplete_details": st.none()
                | st.fixed_dictionaries(
                    {"reason": st.sampled_from(["max_completion_tokens", "max_prompt_tokens"])}
                ),
                "usage": usage(),
            },
            optional={
                "metadata": metadata,
                "temperature": st.none() | st.floats(0, 2),
                "top_p": st.none() | st.floats(0, 1),
                "max_prompt_tokens": st.none() | st.integers(256, 10**6),
                "max_completion_tokens": st.none() | st.integers(256, 10**6),
                "truncation_strategy": st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(["auto", "last_messages"]),
                        "last_messages": st.none() | st.integers(1, 50),
                    }
                ),
                "response_format": st.just("auto"),
                "tool_choice": st.sampled_from(["none", "auto", "required"]),
            },
        )
    )


def plain(value: Any) -> Any:
    """A model dump as the JSON a user would read (floats, ints and nulls as JSON has them)."""
    return json.loads(json.dumps(value))


_Ours = TypeVar("_Ours", RunStep, Run)
_Sdk = TypeVar("_Sdk", SdkRunStep, SdkRun)


def parse_both(
    data: dict[str, Any], ours_type: type[_Ours], sdk_type: type[_Sdk], caplog: pytest.LogCaptureFixture
) -> tuple[_Ours, _Sdk]:
    """Validate with the SDK (the oracle), parse with the provider, and check nothing was lost."""
    caplog.set_level(logging.WARNING)
    sdk = sdk_type.model_validate(data)
    ours = ours_type.from_api(data)
    assert ours.to_json() == data
    assert plain(ours.model_dump(mode="json", exclude_unset=True)) == plain(
        sdk.model_dump(mode="json", exclude_unset=True)
    )
    assert not [r for r in caplog.records if r.name == "airflow_provider_portkey.models"]  # nothing dropped
    return ours, sdk


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(step=run_steps())
def test_every_run_step_the_sdk_accepts_parses_losslessly(
    step: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ours, sdk = parse_both(step, RunStep, SdkRunStep, caplog)
    assert isinstance(ours.status, RunStepStatus)
    assert ours.status == sdk.status
    assert ours.is_terminal is (sdk.status != "in_progress")


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(run=runs())
def test_every_run_the_sdk_accepts_parses_losslessly(
    run: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ours, sdk = parse_both(run, Run, SdkRun, caplog)
    assert isinstance(ours.status, RunStatus)
    assert ours.status == sdk.status
    assert [call.id for call in ours.required_tool_calls] == [
        call.id
        for call in (sdk.required_action.submit_tool_outputs.tool_calls if sdk.required_action else [])
    ]
