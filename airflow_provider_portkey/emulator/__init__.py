"""A local emulator of Portkey's run and run-step API, so tests, demos and benchmarks run offline.

    with EmulatorServer() as server:          # seeded with thread_demo / run_demo steps
        server.state.add_fault("status", status=429, headers={"Retry-After": "1"})
        ...  # point the client at server.base_url

Runs created through the API walk the script of their assistant id (ASST_DEMO, ASST_TOOLS, ...;
see runs.py) and create their steps as they go.

Run it standalone with `python -m airflow_provider_portkey.emulator --port 8787`.
"""

from airflow_provider_portkey.emulator.objects import RUN_STATUSES, RUN_TERMINAL_STATUSES
from airflow_provider_portkey.emulator.runs import (
    ADVANCE_KEY,
    ASST_DEMO,
    ASST_EXPIRES,
    ASST_FAILS,
    ASST_INCOMPLETE,
    ASST_SLOW,
    ASST_TOOLS,
    SECONDS_KEY,
    SLOW_POLLS,
    WEATHER_CALL,
    FunctionCall,
    Stage,
)
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
    "ADVANCE_KEY",
    "ASST_DEMO",
    "ASST_EXPIRES",
    "ASST_FAILS",
    "ASST_INCOMPLETE",
    "ASST_SLOW",
    "ASST_TOOLS",
    "RUN_STATUSES",
    "RUN_TERMINAL_STATUSES",
    "SECONDS_KEY",
    "SEED_RUN_ID",
    "SEED_STEP_IDS",
    "SEED_THREAD_ID",
    "SLOW_POLLS",
    "STEP_CANCELLED",
    "STEP_COMPLETES",
    "STEP_EXPIRED",
    "STEP_FAILS",
    "STEP_INSTANT",
    "STEP_MAP_IDS",
    "STEP_TOOL_CALLS",
    "WEATHER_CALL",
    "EmulatorServer",
    "EmulatorState",
    "FunctionCall",
    "ReceivedRequest",
    "Stage",
]
