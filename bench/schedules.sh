#!/usr/bin/env bash
# Builds the release master and runs bench/schedules.py (hostile schedules; listing latency under them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin mirror-master --bin mirror-confine
exec python3 bench/schedules.py "$@"
