"""Trace ids and metadata derived from the task instance, the logs URL, and the connection's ui_url."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_portkey.errors import PortkeyConfigurationError
from airflow_provider_portkey.settings import PortkeySettings
from airflow_provider_portkey.tracing import TRACE_ID_MAX, TaskTrace, bounded, logs_url, task_trace_id
from tests.support.secrets import API_KEY, VIRTUAL_KEY


@dataclass
class TaskInstance:
    dag_id: str = "agent_pipeline"
    run_id: str = "manual__2025-01-01T00:00:00+00:00"
    task_id: str = "start_run"
    map_index: int = -1
    try_number: int = 1


def settings(**extra: Any) -> PortkeySettings:
    return PortkeySettings.from_connection_fields(
        host=None, password=API_KEY, port=None, extra={"virtual_key": VIRTUAL_KEY, **extra}
    )


def test_trace_id_names_the_task_try_readably() -> None:
    trace = task_trace_id("agent_pipeline", "manual__2025-01-01T00:00:00+00:00", "start_run", -1, 2)
    assert trace == "airflow/agent_pipeline/manual__2025-01-01T00:00:00+00:00/start_run/try-2"


def test_mapped_task_trace_id_carries_the_map_index() -> None:
    assert task_trace_id("d", "r", "t", 3, 1) == "airflow/d/r/t[3]/try-1"


def test_each_try_and_each_map_index_is_its_own_trace() -> None:
    ids = {task_trace_id("d", "r", "t", index, attempt) for index in (-1, 0, 1) for attempt in (1, 2)}
    assert len(ids) == 6


def test_long_ids_are_cut_to_the_limit_with_a_digest_that_keeps_them_apart() -> None:
    long_dag = "d" * 200
    first = task_trace_id(long_dag, "run_1", "t", -1, 1)
    second = task_trace_id(long_dag, "run_2", "t", -1, 1)
    assert len(first) == len(second) == TRACE_ID_MAX
    assert first != second
    assert first == task_trace_id(long_dag, "run_1", "t", -1, 1)  # stable: retries find the same trace
    assert first.startswith("airflow/ddd")


def test_unsafe_run_ids_are_made_header_safe_and_never_merged() -> None:
    spaced = task_trace_id("d", "my run", "t", -1, 1)
    underscored = task_trace_id("d", "my_run", "t", -1, 1)
    accented = task_trace_id("d", "exécution\n", "t", -1, 1)
    assert underscored == "airflow/d/my_run/t/try-1"
    assert spaced != underscored
    assert spaced.startswith("airflow/d/my_run/t/try-1~")
    for trace in (spaced, accented):
        assert trace.isascii()
        assert trace.isprintable()


@given(
    dag_id=st.text(min_size=1, max_size=250),
    run_id=st.text(min_size=1, max_size=250),
    task_id=st.text(min_size=1, max_size=250),
    map_index=st.integers(min_value=-1, max_value=10_000),
    try_number=st.integers(min_value=0, max_value=100),
)
def test_any_task_gives_a_bounded_printable_ascii_trace_id(
    dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int
) -> None:
    trace = task_trace_id(dag_id, run_id, task_id, map_index, try_number)
    assert 0 < len(trace) <= TRACE_ID_MAX
    assert trace.isascii()
    assert trace.isprintable()
    assert trace == task_trace_id(dag_id, run_id, task_id, map_index, try_number)


def test_bounded_keeps_short_values_and_digests_long_ones() -> None:
    assert bounded("short", 128) == "short"
    cut = bounded("x" * 200, 128)
    assert len(cut) == 128
    assert cut != bounded("x" * 199 + "y", 128)


def test_task_trace_from_a_task_context() -> None:
    trace = TaskTrace.from_context({"ti": TaskInstance(map_index=2, try_number=3)})
    assert trace.trace_id == "airflow/agent_pipeline/manual__2025-01-01T00:00:00+00:00/start_run[2]/try-3"
    assert trace.metadata == {
        "dag_id": "agent_pipeline",
        "task_id": "start_run",
        "run_id": "manual__2025-01-01T00:00:00+00:00",
        "map_index": "2",
    }


def test_the_users_trace_id_replaces_the_derived_one_but_keeps_the_metadata() -> None:
    trace = TaskTrace.from_context({"ti": TaskInstance()}, trace_id="checkout-flow-17")
    assert trace.trace_id == "checkout-flow-17"
    assert trace.metadata["task_id"] == "start_run"


def test_metadata_values_are_cut_to_portkeys_128_characters() -> None:
    trace = TaskTrace.from_context({"ti": TaskInstance(run_id="r" * 300)})
    assert len(trace.metadata["run_id"]) == 128


@pytest.mark.parametrize("context", [{}, {"ti": object()}, {"ti": TaskInstance(dag_id="")}])
def test_without_a_task_instance_only_the_users_trace_id_is_used(context: dict[str, Any]) -> None:
    assert TaskTrace.from_context(context) == TaskTrace(None, {})
    assert TaskTrace.from_context(context, "mine") == TaskTrace("mine", {})


def test_logs_url_opens_the_trace_in_the_portkey_app() -> None:
    trace = "airflow/d/manual__2025-01-01T00:00:00+00:00/t/try-1"
    assert logs_url("https://app.portkey.ai/", trace) == (
        "https://app.portkey.ai/logs?trace_id=airflow%2Fd%2Fmanual__2025-01-01T00%3A00%3A00%2B00%3A00%2Ft%2Ftry-1"
    )


def test_ui_url_defaults_to_the_hosted_app_and_is_configurable() -> None:
    assert settings().ui_url == "https://app.portkey.ai"
    assert settings(ui_url="https://portkey.internal:8443/").ui_url == "https://portkey.internal:8443"


@pytest.mark.parametrize("value", ["portkey.internal", "ftp://portkey", "https://user:pw@portkey.internal"])
def test_bad_ui_url_is_a_configuration_error_naming_the_field(value: str) -> None:
    with pytest.raises(PortkeyConfigurationError, match="ui_url"):
        settings(ui_url=value)


def test_connection_metadata_longer_than_portkey_keeps_is_refused() -> None:
    with pytest.raises(PortkeyConfigurationError, match="longer than 128"):
        settings(metadata={"team": "t" * 129})


def test_connection_trace_id_wins_over_the_tasks() -> None:
    assert settings(trace_id="pinned").effective_trace_id("airflow/d/r/t/try-1") == "pinned"
    assert settings().effective_trace_id("airflow/d/r/t/try-1") == "airflow/d/r/t/try-1"
