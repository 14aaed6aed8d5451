"""`python -m airflow_provider_portkey.emulator`: one ready line, serves, stops cleanly on a signal."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from airflow_provider_portkey.emulator import STEP_INSTANT

COMMAND = [sys.executable, "-m", "airflow_provider_portkey.emulator", "--port", "0"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_prints_one_ready_line_serves_and_exits_on_signal(signum: signal.Signals) -> None:
    with subprocess.Popen(COMMAND, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:  # noqa: S603
        assert process.stdout is not None
        assert process.stderr is not None
        line = process.stdout.readline()
        assert line.startswith("portkey emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        assert httpx.get(url + "/").status_code == 200
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
        assert process.stderr.read() == ""


def test_cli_mode_and_no_seed_options_apply() -> None:
    with subprocess.Popen(  # noqa: S603
        [*COMMAND, "--mode", "openai", "--no-seed"], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        url = process.stdout.readline().rsplit(" ", 1)[1].strip()
        headers = {"Authorization": "Bearer sk-1", "OpenAI-Beta": "assistants=v2"}
        response = httpx.get(
            f"{url}/v1/threads/thread_demo/runs/run_demo/steps/{STEP_INSTANT}", headers=headers
        )
        process.terminate()
        assert process.wait(timeout=10) == 0
    assert response.status_code == 404
    assert "x-portkey-trace-id" not in response.headers
