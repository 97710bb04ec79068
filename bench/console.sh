#!/usr/bin/env bash
# Builds the release master and runs bench/console.py (the console's pages with 1,000 projects).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin mirror-master
exec python3 bench/console.py "$@"
