#!/usr/bin/env bash
# Bench of object-store targets (issue 15): first push of 10,000 small files to a real
# S3-compatible server (s3s-fs over loopback), unchanged re-pushes, and a re-push by a master
# that knows nothing of the bucket. Release build; prints figures. BENCH_S3_ENDPOINT (and
# BENCH_S3_KEY, BENCH_S3_SECRET) push to another server's existing, empty bucket `bench` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --locked -p mirror-tests --example targets_bench
