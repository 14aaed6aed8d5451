#!/usr/bin/env bash
# The main job, in one command: run example DAG 1 (portkey_wait_and_branch) under Airflow 3 against
# the local Portkey emulator, and print a short summary of what happened.
#
# Usage: bash scripts/demo.sh [--deferrable] [--step STEP_ID ...]     (--help for details)
#
# It makes or reuses .venv (scripts/bootstrap.sh), then scripts/demo.py makes a temporary
# AIRFLOW_HOME on SQLite, starts the emulator on a free loopback port, runs `airflow dags test`
# for a step that completes and one that fails, prints each run's tasks, the step's final status
# and the branch taken, keeps Airflow's verbose log in a file whose path it prints, and stops
# everything it started, also on failure or Ctrl-C. Exit status: 0 if every DAG run succeeded.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
"$root/scripts/bootstrap.sh" "$venv"
exec "$venv/bin/python" "$root/scripts/demo.py" "$@"
