"""Each benchmark in smoke mode (tiny N): it must run and count right. No timing is asserted here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench import parse_cost, poll_async, poll_sync, requests_per_wait, triggerer
from bench.common import Result, Row, table
from bench.run import BEGIN, END, SMOKE_REGIME, report, write_docs


def _check_rows(result: Result) -> None:
    assert result.rows
    for row in result.rows:
        assert row.value == row.value
        assert row.value >= 0
        if row.baseline is not None:
            assert row.baseline >= 0
    assert table(result.rows)


def test_poll_sync_counts_every_call() -> None:
    result = poll_sync.run(n=20, warmup=2)
    _check_rows(result)
    assert result.checks["calls"] == 20
    assert result.checks["baseline_calls"] == 20
    assert result.checks["statuses"] == ["in_progress"]


def test_poll_async_counts_every_call() -> None:
    result = poll_async.run(n=20, warmup=2, first_polls=3)
    _check_rows(result)
    assert result.checks["calls"] == 20
    assert result.checks["baseline_calls"] == 20
    assert result.checks["first_polls"] == 3
    assert result.checks["reading_polls"] == 3
    assert result.checks["statuses"] == ["in_progress"]


@pytest.mark.parametrize(("rounds", "paired"), [(1, False), (2, False), (1, True)])
def test_triggerer_every_trigger_yields_one_correct_event(rounds: int, paired: bool) -> None:
    regime = dataclasses.replace(SMOKE_REGIME, rounds=rounds, paired=paired)
    result = triggerer.run(regime, timeout=60)
    _check_rows(result)
    assert [row.metric for row in result.rows if row.target.startswith("ratio")] == [
        "CPU per poll",
        "event-loop lag p99",
        "peak RSS per waiting trigger",
    ]
    for variant in triggerer.VARIANTS:
        reports = result.checks["reports"][variant]
        assert len(reports) == rounds, variant
        for one in reports:
            assert one["events"] == 20, variant
            assert (one["lost"], one["duplicated"], one["wrong"]) == (0, 0, 0), variant
            assert one["polls"] == one["expected_polls"], variant
            assert one["ticks"] > 0
            assert one["rss_before"] > 0
            assert one["rss_samples_waiting"] >= 1


def test_triggerer_plan_is_deterministic_and_mixed() -> None:
    steps = triggerer.plan(200, stagger=1.0)
    assert steps == triggerer.plan(200, stagger=1.0)
    assert {step.final for step in steps} == {"completed", "failed"}
    assert {step.polls for step in steps} == {2, 3, 4}
    assert len({step.step_id for step in steps}) == 200


def test_parse_cost_builds_every_dag() -> None:
    result = parse_cost.run(rounds=1, tasks=3)
    _check_rows(result)
    assert result.checks["samples"] == {name: 1 for name in parse_cost.VARIANTS}
    assert result.checks["tasks"] == {name: [3] for name in parse_cost.VARIANTS}
    assert any(module.startswith("airflow_provider_portkey") for module, _ in result.checks["heavy_imports"])


def test_requests_per_wait_matches_hand_counts() -> None:
    result = requests_per_wait.run(keys=5)
    _check_rows(result)
    # Fixed 60 s: polls at 0, 60, ..., 600 (11) see a step done at 600 s; at 601 s it takes 660 (12).
    fixed_60 = requests_per_wait.Setting("fixed", 60, None)
    assert requests_per_wait.simulate(fixed_60, "k", 600.0) == requests_per_wait.Wait(11, 0.0)
    assert requests_per_wait.simulate(fixed_60, "k", 601.0) == requests_per_wait.Wait(12, 59.0)
    assert result.checks["medians"]["fixed 60.0 s"]["requests"] == 12


@pytest.mark.parametrize("setting", requests_per_wait.SETTINGS, ids=lambda s: s.label)
def test_requests_per_wait_detects_completion(setting: requests_per_wait.Setting) -> None:
    wait = requests_per_wait.simulate(setting, "thread#run#step", 600.0)
    assert wait.requests >= 2
    assert wait.delay >= 0
    if setting.max_wait is not None or setting.mode == "fixed":
        assert wait.delay < (setting.max_wait or setting.poke_interval)


def test_report_and_docs_block(tmp_path: Path) -> None:
    result = Result("demo", rows=[Row("0 demo", "metric", 2.0, "ms", 1.0, "floor", "ratio <= 3", True)])
    result.notes.append("a note")
    text = report([result], {"cores": "2"}, "python -m bench", 1.0, markdown=True)
    assert "| 0 demo | metric | 2.00 ms | 1.00 ms (floor) | 2.00 | ratio <= 3 | yes |" in text
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    write_docs(text, docs)
    written = docs.read_text()
    assert written.startswith("intro\n")
    assert written.endswith("outro\n")
    assert "old" not in written
    assert "a note" in written
