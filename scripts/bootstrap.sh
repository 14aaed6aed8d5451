#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv with the provider installed editable plus test tools.
# Idempotent: it re-installs only when pyproject.toml, the Airflow version or the extra pins changed.
# Usage: scripts/bootstrap.sh [VENV_DIR]   (AIRFLOW_VERSION=3.3.2 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv}"
airflow_version="${AIRFLOW_VERSION:-3.3.2}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

# Requirements beyond the test extra (part of the stamp, so changing them re-installs). hatchling,
# the build backend, lets tests/packaging build the sdist and wheel offline (--no-isolation).
pins=("hatchling>=1.25")
case "$airflow_version" in
    # 3.0.x leaves FastAPI unbounded, and a current FastAPI rejects its in-process execution API's
    # requests (every task of `airflow dags test` fails to start with a 422). 3.1 caps it at <0.118.
    # Its api-server also rejects every token with PyJWT >= 2.11 ("Issuer (iss) must be a string");
    # its constraints pinned 2.10.1. The deployment tier runs that api-server.
    3.0.*) pins+=("fastapi<0.118" "pyjwt<2.11") ;;
esac
# Before 3.2, Airflow builds a hook's connection form from wtforms widgets, only when flask-appbuilder
# is installed: install it so that the suite covers the Portkey hook's form for those releases.
case "$airflow_version" in
    3.0.* | 3.1.*) pins+=("flask-appbuilder") ;;
esac

stamp="$venv/.bootstrap-stamp"
want="$(sha256sum <"$root/pyproject.toml" | cut -d" " -f1)-airflow-$airflow_version-${pins[*]}"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

echo "bootstrap: creating $venv (apache-airflow==$airflow_version)" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
    "apache-airflow==$airflow_version" "${pins[@]}" \
    -e "$root[test]"
echo "$want" > "$stamp"
