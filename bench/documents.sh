#!/usr/bin/env bash
# Builds the release master and runs bench/documents.py (hostile YAML and JSON documents: the worst
# time and the peak memory of each refusal).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin mirror-master
exec python3 bench/documents.py "$@"
