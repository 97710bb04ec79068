#!/usr/bin/env bash
# Builds the release master and runs bench/runs.py (dispatch of 10,000 due projects; syncup overhead,
# with and without the deletion dry run and the per-generation snapshot).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rsync >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync; }
cargo build --release --locked --bin mirror-master --bin mirror-confine
exec python3 bench/runs.py "$@"
