#!/usr/bin/env bash
# Issue 10's load test: a release master with its SQLite file, N concurrent keep-alive clients for S
# seconds against P preloaded projects, mixed 80 % listing / 10 % add / 5 % update / 5 % remove,
# Basic auth, 5 s client timeout (tests/examples/load.rs). Prints latencies per kind, the 503s, the
# check of every acknowledged write, and the master's peak RSS.
# Usage: bench/load.sh [clients, default 1000] [seconds, default 60] [projects, default 1000]
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-1000}; secs=${2:-60}; projects=${3:-1000}
cargo build --release --locked --bin mirror-master --bin mirror-confine >/dev/null
cargo build --release --locked -p mirror-tests --example load >/dev/null
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
(cd "$work" && MIRROR_ROOT_PASSWORD=bench-pw MIRROR_MASTER__LISTEN="127.0.0.1:$port" MIRROR_MASTER__LOG=warn \
    MIRROR_MASTER__RSYNCD__PORT="$rport" MIRROR_MASTER__MIRROR_ROOT="$work/mirror" \
    exec "$OLDPWD/target/release/mirror-master" 2>"$work/master.log") &
pid=$!
for _ in $(seq 200); do curl -fs -o /dev/null "$base/status/" && break; sleep 0.05; done

status=0
target/release/examples/load "$base" root bench-pw "$clients" "$secs" "$projects" || status=$?
echo "master peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
echo "master log: $(grep -c . "$work/master.log" || true) lines, of which 'slow' (pool waits): $(grep -c 'slow' "$work/master.log" || true)"
head -c 600 "$work/master.log"; echo
exit $status
