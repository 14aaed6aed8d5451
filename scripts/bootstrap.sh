#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv with the provider installed editable plus test tools.
# Idempotent: it re-installs only when pyproject.toml or the Airflow version changed.
# Usage: scripts/bootstrap.sh [VENV_DIR]   (AIRFLOW_VERSION=3.3.2 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv}"
airflow_version="${AIRFLOW_VERSION:-3.3.2}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

stamp="$venv/.bootstrap-stamp"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)-airflow-$airflow_version"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

echo "bootstrap: creating $venv (apache-airflow==$airflow_version)" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
    "apache-airflow==$airflow_version" \
    -e "$root[test]"
echo "$want" > "$stamp"
