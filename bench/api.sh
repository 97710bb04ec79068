#!/usr/bin/env bash
# Throughput and p99 latency of GET /list_projects/ with 100 projects, measured with wrk at 2 and
# 32 connections, without and with HTTP Basic auth. Installs wrk (Debian) when missing.
# Usage: bench/api.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq wrk
fi
cargo build --release --locked --bin mirror-master >/dev/null

work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
(cd "$work" && MIRROR_ROOT_PASSWORD=bench-pw MIRROR_MASTER__LISTEN="127.0.0.1:$port" MIRROR_MASTER__LOG=warn \
    exec "$OLDPWD/target/release/mirror-master") &
pid=$!
for _ in $(seq 200); do curl -fs -o /dev/null "$base/list_projects/" && break; sleep 0.05; done

for i in $(seq 1 100); do
    curl -fs -o /dev/null -u root:bench-pw -X POST "$base/add_project/" -d "{
      \"project\": \"project$i\", \"rsync_host\": \"rsync.example.org\", \"rsync_module\": \"mod$i/sub\",
      \"dest\": \"project$i\", \"rsync_password\": \"secret$i\",
      \"cron_options\": {\"hour\": \"*/6\", \"minute\": \"$((i % 60))\"},
      \"rsync_options\": {\"basic\": [\"--no-motd\", \"--exclude=*.tmp\"], \"delete\": \"--delete-after\"}}"
done
echo "projects: $(curl -fs "$base/list_projects/" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')," \
     "response: $(curl -fs "$base/list_projects/" | wc -c) bytes"

auth="Authorization: Basic $(printf 'root:bench-pw' | base64)"
printf '\n%-28s %12s %10s %10s\n' "run" "requests/s" "p50" "p99"
run() {
    local label=$1 conns=$2; shift 2
    local out
    out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" "$base/list_projects/")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    if grep -q "Non-2xx" <<<"$out"; then echo "$out"; echo "non-2xx answers in $label" >&2; exit 1; fi
    printf '%-28s %12s %10s %10s\n' "$label" "$rps" "$p50" "$p99"
}
run "public, 2 connections" 2
run "public, 32 connections" 32
run "basic auth, 2 connections" 2 -H "$auth"
run "basic auth, 32 connections" 32 -H "$auth"
echo "master peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
