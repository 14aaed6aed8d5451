"""Helpers shared by the sync and async hook tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_portkey.emulator import SEED_RUN_ID, SEED_THREAD_ID
from tests.conftest import PortkeyConnection

T, R = SEED_THREAD_ID, SEED_RUN_ID


def use_connection(monkeypatch: pytest.MonkeyPatch, conn: PortkeyConnection, **fields: Any) -> None:
    """Replace top-level connection fields (host, password, port) and merge ``extra``."""
    extra = {**conn.fields["extra"], **fields.pop("extra", {})}
    merged = {**conn.fields, **fields, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn.conn_id.upper()}", json.dumps(merged))
