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
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)}
work=$(mktemp -d /tmp/mirror-bench-backends.XXXXXX)
if [ "$(id -u)" -eq 0 ]; then chown postgres "$work"; AS_PG=(runuser -u postgres --); else AS_PG=(); fi
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$work/data" -A trust -U postgres >/dev/null
# Durable as a production server would be (fsync on): the writes are measured honestly.
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$work/data" -l "$work/log" -w start -o \
    "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
mkdir -p "$work/run" && chmod 777 "$work/run"
python3 bench/backends.py "$PWD/target/release/mirror-master" "postgres://postgres@127.0.0.1:$pg_port" \
    "$work/run" "${1:-10}"
