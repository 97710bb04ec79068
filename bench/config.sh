#!/usr/bin/env bash
# Builds the release master and runs bench/config.py (importing 10,000 projects; the history of a
# project with 10,000 versions).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin mirror-master
exec python3 bench/config.py "$@"
