"""1. Poll cost, sync: ``PortkeyHook.get_run_step`` vs a bare ``requests.Session().get`` + ``json.loads``.

Same server (the emulator in its own process), same headers, same process; the two calls are
interleaved (their order alternates every iteration) so drift in the machine hits both alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import requests

from bench.common import (
    CONN_ID,
    RUN_ID,
    THREAD_ID,
    Emulator,
    Result,
    Row,
    connection_env,
    environ,
    median,
    percentile,
)

STEP_ID = "step_sync_poll"
TARGET_RATIO = 1.10


def run(n: int = 3000, warmup: int = 200) -> Result:
    from airflow_provider_portkey.hooks.portkey import PortkeyHook

    result = Result("poll_sync")
    with Emulator() as emulator, environ(connection_env(emulator.url)):
        emulator.add_step(STEP_ID, statuses=["in_progress"])  # never finishes: every poll is alike
        with PortkeyHook(CONN_ID) as hook, requests.Session() as session:
            session.headers.clear()
            session.headers.update(hook.session.headers)  # exactly what the hook sends
            settings = hook.settings
            url = f"{settings.base_url}/threads/{THREAD_ID}/runs/{RUN_ID}/steps/{STEP_ID}"
            timeout = (settings.connect_timeout, settings.read_timeout)

            def provider() -> str:
                return hook.get_run_step(THREAD_ID, RUN_ID, STEP_ID).status.value

            def bare() -> str:
                status: str = json.loads(session.get(url, timeout=timeout).content)["status"]
                return status

            hook_ns, bare_ns, statuses = _interleave(provider, bare, n, warmup)
    ratio = median(hook_ns) / median(bare_ns)
    result.rows += [
        Row(
            "1 sync poll",
            "median per call",
            median(hook_ns) / 1e3,
            "us",
            median(bare_ns) / 1e3,
            "requests+json.loads",
            f"ratio <= {TARGET_RATIO}",
            ratio <= TARGET_RATIO,
        ),
        Row(
            "1 sync poll",
            "p90 per call",
            percentile(hook_ns, 90) / 1e3,
            "us",
            percentile(bare_ns, 90) / 1e3,
            "requests+json.loads",
        ),
    ]
    result.checks = {
        "calls": len(hook_ns),
        "baseline_calls": len(bare_ns),
        "statuses": sorted(set(statuses)),
        "overhead_us": (median(hook_ns) - median(bare_ns)) / 1e3,
    }
    return result


def _interleave(
    provider: Callable[[], str], bare: Callable[[], str], n: int, warmup: int
) -> tuple[list[int], list[int], list[str]]:
    """Time ``provider`` and ``bare`` alternately (order flipped every iteration); drop the warm-up."""
    hook_ns: list[int] = []
    bare_ns: list[int] = []
    statuses: list[str] = []
    clock = time.perf_counter_ns
    for i in range(warmup + n):
        pair = (
            ((provider, hook_ns), (bare, bare_ns)) if i % 2 == 0 else ((bare, bare_ns), (provider, hook_ns))
        )
        for call, sink in pair:
            start = clock()
            status = call()
            elapsed = clock() - start
            if i >= warmup:
                sink.append(elapsed)
                statuses.append(status)
    return hook_ns, bare_ns, statuses
