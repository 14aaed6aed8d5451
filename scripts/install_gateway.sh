#!/usr/bin/env bash
# Install the pinned open-source Portkey gateway (tests/e2e/gateway/package.json + package-lock.json)
# into a cache directory, for the end-to-end tests.
#
# Usage: scripts/install_gateway.sh [DEST]     (default: <repo>/.cache/portkey-gateway)
#
# The install is keyed by the sha256 of package.json + package-lock.json: when DEST already holds an
# install with the same key, nothing is run. Concurrent runs are serialised with flock(1) when it is
# available. npm's own output goes to stderr; the last line on stdout is the absolute path of the
# gateway's build/start-server.js. A missing node or npm exits non-zero with a message.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
spec_dir="$root/tests/e2e/gateway"
dest="${1:-$root/.cache/portkey-gateway}"
min_node_major=18

die() {
    echo "install_gateway: $*" >&2
    exit 1
}

command -v node >/dev/null 2>&1 ||
    die "'node' was not found on PATH; install Node.js >= $min_node_major (with npm) to run the gateway tests"
command -v npm >/dev/null 2>&1 ||
    die "'npm' was not found on PATH; install npm (it ships with Node.js) to run the gateway tests"
node_major="$(node -p 'process.versions.node.split(".")[0]')" ||
    die "'node' is on PATH but does not run"
[[ "$node_major" =~ ^[0-9]+$ && "$node_major" -ge "$min_node_major" ]] ||
    die "Node.js >= $min_node_major is required, found $(node --version)"

[[ -f "$spec_dir/package.json" ]] || die "missing $spec_dir/package.json"
key_files=("$spec_dir/package.json")
have_lock=0
if [[ -f "$spec_dir/package-lock.json" ]]; then
    have_lock=1
    key_files+=("$spec_dir/package-lock.json")
fi
key="$(cat "${key_files[@]}" | sha256sum | cut -d' ' -f1)"

mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
stamp="$dest/.install-key"
entry="$dest/node_modules/@portkey-ai/gateway/build/start-server.js"

installed() {
    [[ -f "$stamp" && "$(cat "$stamp")" == "$key" && -f "$entry" ]]
}

if ! installed; then
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$dest/.install.lock"
        flock 9
    fi
    # Another process may have finished the same install while we waited for the lock.
    if ! installed; then
        echo "install_gateway: installing the Portkey gateway into $dest" >&2
        rm -f "$stamp"
        cp "$spec_dir/package.json" "$dest/package.json"
        if [[ $have_lock -eq 1 ]]; then
            cp "$spec_dir/package-lock.json" "$dest/package-lock.json"
            (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund >&2) ||
                die "'npm ci' failed in $dest (see the npm output above)"
        else
            echo "install_gateway: no package-lock.json in $spec_dir; falling back to 'npm install'" >&2
            rm -f "$dest/package-lock.json"
            (cd "$dest" && npm install --ignore-scripts --no-audit --no-fund >&2) ||
                die "'npm install' failed in $dest (see the npm output above)"
        fi
        [[ -f "$entry" ]] || die "npm finished but $entry does not exist"
        echo "$key" >"$stamp"
    fi
fi

echo "$entry"
