"""5. Requests per wait: a step that completes about 10 minutes after the wait begins, on a simulated clock.

Each wait follows the deferrable sensor's schedule: the sensor pokes once at t=0 (poll 1) and
defers with ``polls_done=1``; the trigger sleeps ``polling.poll_interval(..., 1)`` and goes on
numbering polls from there (the same formula poke and reschedule mode use), until a poll at or
after the completion time sees the step finished.
Exponential backoff jitters deterministically per step, so each setting is run for many step ids and
reported as median (and worst) requests and detection delay. The completion time is spread evenly
over 600-660 s, because where it falls between two polls decides the delay (exactly 600 s would
flatter every interval that divides 600). Nothing sleeps; no server is involved.

The baseline is Airflow's default: a fixed ``poke_interval`` of 60 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_portkey.polling import poll_interval
from bench.common import Result, Row, fmt, median, percentile

COMPLETES_AFTER = 600.0
SPREAD = 60.0
BASELINE = ("fixed", 60.0, None)


@dataclass(frozen=True)
class Setting:
    mode: str  # "fixed" | "backoff"
    poke_interval: float
    max_wait: float | None

    @property
    def label(self) -> str:
        if self.mode == "fixed":
            return f"fixed {fmt(self.poke_interval)} s"
        cap = f", max_wait {fmt(self.max_wait)} s" if self.max_wait is not None else ", no max_wait"
        return f"backoff from {fmt(self.poke_interval)} s{cap}"


SETTINGS = (
    Setting("fixed", 10, None),
    Setting("fixed", 30, None),
    Setting("fixed", 60, None),
    Setting("fixed", 120, None),
    Setting("backoff", 10, None),
    Setting("backoff", 60, None),
    Setting("backoff", 10, 60),
    Setting("backoff", 30, 120),
    Setting("backoff", 60, 300),
)


@dataclass(frozen=True)
class Wait:
    requests: int
    delay: float  # seconds from completion to the poll that saw it


def simulate(setting: Setting, jitter_key: str, completes_after: float = COMPLETES_AFTER) -> Wait:
    """One deferrable wait on a simulated clock: poll 1 (the sensor's poke) at t=0, then the trigger."""
    now = 0.0
    for poll in range(1, 100_000):
        if now >= completes_after:
            return Wait(poll, now - completes_after)
        now += poll_interval(
            setting.poke_interval,
            poll,
            exponential_backoff=setting.mode == "backoff",
            jitter_key=jitter_key,
            max_wait=setting.max_wait,
        )
    raise AssertionError("the simulated wait did not end")


def run(keys: int = 240, completes_after: float = COMPLETES_AFTER, spread: float = SPREAD) -> Result:
    result = Result("requests_per_wait")
    waits = {
        setting: [
            simulate(setting, f"thread_x#run_x#step_{k}", completes_after + spread * k / keys)
            for k in range(keys)
        ]
        for setting in SETTINGS
    }
    base = waits[Setting(*BASELINE)]
    base_requests = median([w.requests for w in base])
    base_delay = median([w.delay for w in base])
    for setting in SETTINGS:
        requests = [w.requests for w in waits[setting]]
        delays = [w.delay for w in waits[setting]]
        result.rows.append(
            Row(
                "5 requests/wait",
                f"{setting.label}: requests (max {max(requests)})",
                median(requests),
                "",
                base_requests,
                "fixed 60 s",
            )
        )
        result.rows.append(
            Row(
                "5 requests/wait",
                f"{setting.label}: detection delay (p90 {fmt(percentile(delays, 90))} s)",
                median(delays),
                "s",
                base_delay,
                "fixed 60 s",
            )
        )
    result.checks = {
        "keys": keys,
        "completes_after": [completes_after, completes_after + spread],
        "waits": {s.label: len(w) for s, w in waits.items()},
        "medians": {
            s.label: {"requests": median([x.requests for x in w]), "delay": median([x.delay for x in w])}
            for s, w in waits.items()
        },
        "max_delay": {s.label: max(x.delay for x in w) for s, w in waits.items()},
    }
    result.notes.append(
        "requests are the same in poke, reschedule and deferrable mode: the deferred trigger "
        "continues the sensor's poll count (polls_done) and sleeps before its first poll"
    )
    return result
