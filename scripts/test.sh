#!/usr/bin/env bash
# Install everything, run ruff and mypy, then the whole pytest suite twice: on the newest Airflow
# (.venv, AIRFLOW_VERSION of scripts/bootstrap.sh) and on the oldest one the package supports
# (.venv-airflow-<major.minor>). Both runs include the deployment tier (tests/deployment: a real
# Airflow deployment on SQLite and on a throwaway PostgreSQL cluster, whose server binaries this
# script installs when they are missing). Extra args go to both pytest runs. Exit status: 0 only when
# everything passed; a pytest run that collects no tests (exit 5) is a failure too.
#   OLDEST_AIRFLOW_VERSION=3.0.6   the oldest Airflow to test (empty: skip that run)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${VENV:-$root/.venv}"
oldest="${OLDEST_AIRFLOW_VERSION-3.0.6}"
oldest_venv="$root/.venv-airflow-${oldest%.*}"

"$root/scripts/bootstrap.sh" "$venv"
if [[ -n "$oldest" ]]; then
    started=$SECONDS
    AIRFLOW_VERSION="$oldest" "$root/scripts/bootstrap.sh" "$oldest_venv"
    echo "bootstrap of $oldest_venv: $((SECONDS - started)) s"
fi

# The deployment tier's PostgreSQL leg runs a throwaway cluster with the machine's PostgreSQL server
# binaries (Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH): install them where
# possible, else stop here saying what is missing. The tier never skips that leg.
if [[ -z "${PG_BINDIR:-}" ]] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "== installing the PostgreSQL server binaries (deployment tier)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 ||
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
    else
        echo "The deployment tier needs the PostgreSQL server binaries (initdb, pg_ctl):" \
            "install them (apt-get install postgresql-15) or set PG_BINDIR to their folder." >&2
        exit 1
    fi
fi

echo "== ruff"
"$venv/bin/ruff" check .
"$venv/bin/ruff" format --check .
echo "== mypy"
"$venv/bin/mypy"

summary=()
failed=0
# run_pytest VENV: the suite with that venv's Python and CLI tools first on PATH.
run_pytest() {
    local env_dir="$1" version status=0 log
    shift
    version="$("$env_dir/bin/python" -c 'from importlib.metadata import version; print(version("apache-airflow"))')"
    echo "== pytest on apache-airflow $version ($env_dir)"
    log="$(mktemp)"
    PATH="$env_dir/bin:$PATH" VIRTUAL_ENV="$env_dir" "$env_dir/bin/python" -m pytest "$@" 2>&1 |
        tee "$log" || status=${PIPESTATUS[0]}
    local last
    # pytest's closing line, e.g. "== 3 passed, 1 skipped in 4.20s ==" (no "=" with -q).
    last="$({ grep -E ' in [0-9.]+s( \([0-9:]+\))?( =+)?$' "$log" || true; } | tail -n 1 | sed 's/^=* *//; s/ *=*$//')"
    rm -f "$log"
    case $status in
        0) summary+=("apache-airflow $version: passed (${last:-?})") ;;
        5) summary+=("apache-airflow $version: FAILED, pytest collected no tests") ;;
        *) summary+=("apache-airflow $version: FAILED, pytest exit $status (${last:-no summary})") ;;
    esac
    [[ $status -eq 0 ]] || failed=1
}

run_pytest "$venv" "$@"
if [[ -n "$oldest" ]]; then
    run_pytest "$oldest_venv" "$@"
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $failed
