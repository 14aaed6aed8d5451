"""2. Poll cost, async: the trigger's single poll (``PortkeyAsyncHook.get_run_step`` on the shared client)
vs a bare shared ``httpx.AsyncClient`` GET + ``json.loads``.

Same event loop, same server (the emulator in its own process), same headers, interleaved with the
order flipped every iteration. The hook is reused across polls, as one trigger reuses its hook; the
first poll of a trigger (a new hook) is reported separately: reusing the loop's recent read of the
connection, and reading it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import httpx

from bench.common import (
    CONN_ID,
    RUN_ID,
    THREAD_ID,
    Emulator,
    Result,
    Row,
    Timings,
    connection_env,
    environ,
    median,
)

STEP_ID = "step_async_poll"
TARGET_RATIO = 1.15


def run(n: int = 3000, warmup: int = 200, first_polls: int = 50) -> Result:
    with Emulator() as emulator, environ(connection_env(emulator.url)):
        emulator.add_step(STEP_ID, statuses=["in_progress"])
        return asyncio.run(_measure(n, warmup, first_polls))


async def _measure(n: int, warmup: int, first_polls: int) -> Result:
    from airflow_provider_portkey.hooks import portkey_async
    from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook, close_shared_client
    from airflow_provider_portkey.protocol import run_step_request

    result = Result("poll_async")
    hook = PortkeyAsyncHook(CONN_ID)
    settings = await hook.get_settings()
    url = f"{settings.base_url}/threads/{THREAD_ID}/runs/{RUN_ID}/steps/{STEP_ID}"
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    headers = hook._headers(settings, run_step_request(THREAD_ID, RUN_ID, STEP_ID))  # what the hook sends
    timeout = httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout)
    try:
        async with httpx.AsyncClient(
            headers=headers, timeout=timeout, limits=limits, trust_env=False, follow_redirects=False
        ) as client:

            async def provider() -> str:
                return str((await hook.get_run_step(THREAD_ID, RUN_ID, STEP_ID)).status)

            async def bare() -> str:
                status: str = json.loads((await client.get(url)).content)["status"]
                return status

            async def fresh_hook() -> str:  # a trigger's first poll: reuses the loop's recent read
                new = PortkeyAsyncHook(CONN_ID)
                return str((await new.get_run_step(THREAD_ID, RUN_ID, STEP_ID)).status)

            async def reading_hook() -> str:  # ... and one that reads the connection itself
                portkey_async._transport().connections.clear()
                return await fresh_hook()

            polls = await _interleave(provider, bare, n, warmup)
            first = await _interleave(fresh_hook, bare, first_polls, min(warmup, 10))
            reading = await _interleave(reading_hook, bare, first_polls, min(warmup, 10))
    finally:
        await close_shared_client()
    result.rows += [
        *polls.rows("2 async poll", "httpx.AsyncClient+json.loads", TARGET_RATIO),
        *(
            Row(
                "2 async poll",
                metric,
                median(timings.provider_ns) / 1e3,
                "us",
                median(timings.bare_ns) / 1e3,
                "httpx.AsyncClient+json.loads",
            )
            for metric, timings in (
                ("first poll of a trigger (the loop's recent connection read)", first),
                ("first poll that reads the connection (once per 10 s per connection and loop)", reading),
            )
        ),
    ]
    result.checks = {
        **polls.checks(),
        "first_polls": len(first.provider_ns),
        "reading_polls": len(reading.provider_ns),
        "statuses": sorted(set(polls.statuses) | set(first.statuses) | set(reading.statuses)),
    }
    return result


async def _interleave(
    provider: Callable[[], Awaitable[str]], bare: Callable[[], Awaitable[str]], n: int, warmup: int
) -> Timings:
    timings = Timings()
    for call, sink in timings.calls(provider, bare, n, warmup):
        start = time.perf_counter_ns()
        status = await call()
        timings.add(sink, time.perf_counter_ns() - start, status)
    return timings
