#!/usr/bin/env bash
# The two backends side by side on this machine: add_project per second (16 writing clients) and
# GET /list_projects/ per second (wrk, 32 connections, 1,000 projects) on SQLite and on
# PostgreSQL; then three nodes on PostgreSQL and the failover time over ten SIGKILLs of the
# leader (p50, max). Starts its own throwaway PostgreSQL (as the `postgres` user when root).
# Usage: bench/backends.sh [seconds per wrk run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq wrk
fi
cargo build --release --locked --bin mirror-master >/dev/null
source scripts/postgres.sh
work=$pg_dir
# Durable as a production server would be (fsync on): the writes are measured honestly.
start_postgres -c max_connections=200
mkdir -p "$work/run" && chmod 777 "$work/run"
python3 bench/backends.py "$PWD/target/release/mirror-master" "$pg_url" \
    "$work/run" "${1:-10}"
