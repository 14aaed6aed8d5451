"""Fixtures for the RunStepTrigger tests (shared helpers live in ``tests.sensors.support``)."""

from __future__ import annotations

from tests.sensors.support import clock, debug_logs

__all__ = ["clock", "debug_logs"]
