"""1. Poll cost, sync: ``PortkeyHook.get_run_step`` vs a bare ``requests.Session().get`` + ``json.loads``.

Same server (the emulator in its own process), same headers, same process; the two calls are
interleaved (their order alternates every iteration) so drift in the machine hits both alike.
"""

from __future__ import annotations

import json
import time

import requests

from bench.common import (
    CONN_ID,
    RUN_ID,
    THREAD_ID,
    Emulator,
    Result,
    Timings,
    connection_env,
    environ,
)

STEP_ID = "step_sync_poll"
TARGET_RATIO = 1.10


def run(n: int = 3000, warmup: int = 200) -> Result:
    from airflow_provider_portkey.hooks.portkey import PortkeyHook
    from airflow_provider_portkey.protocol import run_step_request

    result = Result("poll_sync")
    with Emulator() as emulator, environ(connection_env(emulator.url)):
        emulator.add_step(STEP_ID, statuses=["in_progress"])  # never finishes: every poll is alike
        with PortkeyHook(CONN_ID) as hook, requests.Session() as session:
            settings = hook.settings
            session.headers.clear()
            # Exactly what the hook sends with a step's GET: the connection's headers and the request's.
            session.headers.update(hook._headers(settings, run_step_request(THREAD_ID, RUN_ID, STEP_ID)))
            url = f"{settings.base_url}/threads/{THREAD_ID}/runs/{RUN_ID}/steps/{STEP_ID}"
            timeout = (settings.connect_timeout, settings.read_timeout)

            def provider() -> str:
                return str(hook.get_run_step(THREAD_ID, RUN_ID, STEP_ID).status)

            def bare() -> str:
                status: str = json.loads(session.get(url, timeout=timeout).content)["status"]
                return status

            timings = Timings()
            for call, sink in timings.calls(provider, bare, n, warmup):
                start = time.perf_counter_ns()
                status = call()
                timings.add(sink, time.perf_counter_ns() - start, status)
    result.rows += timings.rows("1 sync poll", "requests+json.loads", TARGET_RATIO)
    result.checks = timings.checks()
    return result
