#!/usr/bin/env bash
# Builds the release master and runs bench/status.py (/metrics with 10,000 projects, the status page
# and /jobs with 1,000).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin mirror-master
exec python3 bench/status.py "$@"
