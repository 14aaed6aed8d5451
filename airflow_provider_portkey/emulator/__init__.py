"""A local emulator of Portkey's run-step API, so tests, demos and benchmarks run offline.

    with EmulatorServer() as server:          # seeded with thread_demo / run_demo steps
        server.state.add_fault("status", status=429, headers={"Retry-After": "1"})
        ...  # point the client at server.base_url

Run it standalone with `python -m airflow_provider_portkey.emulator --port 8787`.
"""

from airflow_provider_portkey.emulator.server import EmulatorServer
from airflow_provider_portkey.emulator.state import (
    SEED_RUN_ID,
    SEED_STEP_IDS,
    SEED_THREAD_ID,
    STEP_CANCELLED,
    STEP_COMPLETES,
    STEP_EXPIRED,
    STEP_FAILS,
    STEP_INSTANT,
    STEP_MAP_IDS,
    STEP_TOOL_CALLS,
    EmulatorState,
    ReceivedRequest,
)

__all__ = [
    "SEED_RUN_ID",
    "SEED_STEP_IDS",
    "SEED_THREAD_ID",
    "STEP_CANCELLED",
    "STEP_COMPLETES",
    "STEP_EXPIRED",
    "STEP_FAILS",
    "STEP_INSTANT",
    "STEP_MAP_IDS",
    "STEP_TOOL_CALLS",
    "EmulatorServer",
    "EmulatorState",
    "ReceivedRequest",
]
