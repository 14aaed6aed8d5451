"""README's "your own DAG against the emulator" block, run as written: if the README breaks, this fails.

The block is taken from README.md itself and run with bash in a temporary directory that holds
only a link to the repo's ``.venv`` (so nothing lands in the repo), with ``PORT`` set to a free
port; the emulator it starts is stopped with its process group.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.example_dags.airflow_cli import REPO_ROOT, RUN_TIMEOUT
from tests.support.ports import free_port

pytestmark = pytest.mark.e2e

HEADING = "### Your own DAG against the emulator"


def readme_block() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    assert HEADING in readme, "the README lost its section"
    section = readme.split(HEADING, 1)[1]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found, "the section has no bash block"
    return found.group(1)


def test_the_readme_block_runs_a_dag_of_your_own_against_the_emulator(tmp_path: Path) -> None:
    block = readme_block()
    (tmp_path / ".venv").symlink_to(REPO_ROOT / ".venv")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env.update({"PORT": str(free_port()), "TMPDIR": str(tmp_path)})
    bash = shutil.which("bash")
    assert bash is not None
    process = subprocess.Popen(  # noqa: S603 - the README's own block is what this test runs
        [bash, "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None or process.returncode != 0:
            with contextlib.suppress(ProcessLookupError):  # the block's emulator, if it did not stop it
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()

    assert process.returncode == 0, output[-3000:]
    assert re.search(r"MY_AGENT: run run_\w+ is completed after 1 step\(s\)", output), output[-3000:]
    assert "state=success" in output
    assert not (REPO_ROOT / "dags").exists()
