#!/usr/bin/env bash
# Bench of object-store targets (issue 15): first push of 10,000 small files to a real
# S3-compatible server (s3s-fs over loopback), unchanged re-pushes, and a re-push by a master
# that knows nothing of the bucket. Release build; prints figures.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --locked -p mirror-tests --example targets_bench
