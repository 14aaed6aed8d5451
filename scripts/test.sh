#!/usr/bin/env bash
# Install everything, then run ruff, mypy and the whole pytest suite. Extra args go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"
"$root/scripts/bootstrap.sh" "$venv"
export PATH="$venv/bin:$PATH"

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy"
mypy
echo "== pytest"
status=0
pytest "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit $status
