"""Soak: 1,000 deferrable sensors' triggers on one event loop against an emulator injecting faults.

The emulator runs in its own process (``python -m airflow_provider_portkey.emulator``), scripted
through its HTTP control API, so the triggers' loop has this process to itself, as on a triggerer.
A seeded random choice gives each step its statuses (1-3 polls ``in_progress``, then one terminal
status) and a burst of 0-3 transient faults (429 or 503) that about 20% of all responses carry.
With one retry per poll, a burst of 3 outlasts the hook and reaches the trigger, which keeps
waiting. Polls are 10 ms apart; retries wait at most 10 ms.

All 1,000 triggers run at once on one loop, but, as sensors that deferred at different moments
do, each makes its first poll at a seeded moment within the first ``SPREAD`` seconds. (The same
1,000 all polling in the same instant, a thundering herd, is far slower: the shared client's
connection pool goes quadratic in the number of requests in flight; see docs/reliability.md.)

Every trigger must yield exactly one event with the right outcome for its step and its
``fail_on_statuses``; none may time out or error while its deadline is ten minutes away; and the
emulator must have received exactly the requests the script implies: each faulted response
once, each status once, and nothing after a terminal status.
"""

from __future__ import annotations

import asyncio
import json
import random
import selectors
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_portkey.hooks.portkey_async import close_shared_client
from airflow_provider_portkey.triggers.run_step import RunStepTrigger
from tests.support.secrets import API_KEY, VIRTUAL_KEY

SEED = 20240607
TRIGGERS = 1000
THREAD, RUN = "thread_soak", "run_soak"
FAIL_ON = ["failed", "cancelled", "expired"]
TERMINAL = ["completed", "completed", "failed", "cancelled", "expired"]
#: Faults per step: 0 (50%), 1 (30%), 2 (15%) or 3 (5%): 0.75 a step, ~20% of ~3.75 responses.
BURSTS = [0] * 10 + [1] * 6 + [2] * 3 + [3]
STARTUP_SECONDS = 30
SPREAD = 8.0


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[str]:
    """An emulator in its own process, without seed data; yields its URL once it accepts connections."""
    stderr = (tmp_path / "emulator.err").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_portkey.emulator", "--port", "0", "--no-seed"],
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=STARTUP_SECONDS)
        assert ready, f"the emulator printed nothing in {STARTUP_SECONDS} s"
        line = process.stdout.readline().decode().strip()
        assert line.startswith("portkey emulator listening on http://127.0.0.1:"), line
        yield line.rsplit(" ", 1)[1]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if SIGTERM is ignored
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        stderr.close()


@dataclass(frozen=True)
class Scripted:
    step_id: str
    statuses: list[str]
    faults: int
    fail_on: list[str]

    @property
    def expected_event(self) -> str:
        return "failure" if self.statuses[-1] in self.fail_on else "success"


def script(base_url: str, rng: random.Random) -> list[Scripted]:
    steps = []
    with requests.Session() as control:
        for index in range(TRIGGERS):
            scripted = Scripted(
                step_id=f"step_{index:04d}",
                statuses=["in_progress"] * rng.randint(1, 3) + [rng.choice(TERMINAL)],
                faults=rng.choice(BURSTS),
                fail_on=FAIL_ON if index % 2 else [],
            )
            response = control.post(
                f"{base_url}/_emulator/steps",
                json={
                    "thread_id": THREAD,
                    "run_id": RUN,
                    "step_id": scripted.step_id,
                    "statuses": scripted.statuses,
                },
                timeout=10,
            )
            assert response.status_code == 201, response.text
            if scripted.faults:
                status = rng.choice([429, 503])
                headers = {"Retry-After": "0"} if rng.random() < 0.5 else {}
                response = control.post(
                    f"{base_url}/_emulator/faults",
                    json={
                        "kind": "status",
                        "status": status,
                        "headers": headers,
                        "times": scripted.faults,
                        "path_contains": f"/steps/{scripted.step_id}",
                    },
                    timeout=10,
                )
                assert response.status_code == 201, response.text
            steps.append(scripted)
    return steps


async def events_of(trigger: RunStepTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


async def run_all(triggers: list[RunStepTrigger]) -> list[list[dict[str, Any]]]:
    try:
        return await asyncio.gather(*(events_of(trigger) for trigger in triggers))
    finally:
        await close_shared_client()


@pytest.mark.timeout(150)
def test_a_thousand_deferred_waits_on_one_loop_under_transient_faults_each_end_once_and_right(
    emulator_process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url = emulator_process
    connection = {
        "conn_type": "portkey",
        "host": base_url,
        "password": API_KEY,
        "extra": {"virtual_key": VIRTUAL_KEY, "max_retries": 1, "max_retry_wait": 0.01},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PORTKEY_SOAK", json.dumps(connection))
    rng = random.Random(SEED)
    steps = script(base_url, rng)
    deadline = time.time() + 600
    triggers = [
        RunStepTrigger(
            portkey_conn_id="portkey_soak",
            thread_id=THREAD,
            run_id=RUN,
            step_id=step.step_id,
            deadline=deadline,
            poll_interval=0.01,
            fail_on_statuses=step.fail_on,
            # The sensor checked once before deferring, at a moment of its own.
            polls_done=1,
            last_status="in_progress",
            min_first_wait=rng.uniform(0, SPREAD),
        )
        for step in steps
    ]

    started = time.monotonic()
    results = asyncio.run(run_all(triggers))
    elapsed = time.monotonic() - started

    assert elapsed < 60, f"the soak took {elapsed:.1f} s"
    assert time.time() < deadline  # so no event may be a timeout
    outcomes: Counter[str] = Counter()
    for step, events in zip(steps, results, strict=True):
        assert len(events) == 1, (step, events)  # never lost, never duplicated
        (event,) = events
        assert event["status"] == step.expected_event, (step, event)
        assert event["step"]["id"] == step.step_id
        assert event["step"]["status"] == step.statuses[-1]
        outcomes[f"{event['status']}:{step.statuses[-1]}"] += 1
    # Both outcomes, every terminal status, and fail_on_statuses both ways, all occurred.
    assert {"success:completed", "failure:failed", "success:failed", "failure:expired"} <= set(outcomes)

    recorded = requests.get(f"{base_url}/_emulator/requests", timeout=30).json()["requests"]
    gets = Counter(request["path"].rsplit("/", 1)[1] for request in recorded if request["method"] == "GET")
    for step in steps:
        # Each scripted status was served once, each fault once, and nothing after the terminal one.
        assert gets[step.step_id] == len(step.statuses) + step.faults, step
    faulted = sum(step.faults for step in steps)
    assert 0.15 < faulted / len(recorded) < 0.25
    assert any(step.faults > connection["extra"]["max_retries"] for step in steps)  # type: ignore[index]
