#!/usr/bin/env bash
# Builds the release binaries and runs bench/cluster.py (propagation to 1, 4 and 16 slaves).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rsync >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync; }
cargo build --release --locked --bins
exec python3 bench/cluster.py "$@"
