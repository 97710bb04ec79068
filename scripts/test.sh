#!/usr/bin/env bash
# Runs every test: formatting, lints, unit tests, and the end-to-end tests that start real
# rsync daemons, masters and slaves, and load the status page in headless Chromium. Installs what it
# needs (Debian's rsync, iproute2, chromium and chromedriver, npm for axe-core, prometheus for promtool, openssh-server, git, lftp) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# The console's tests drive chromium over WebDriver, and check its pages with axe-core (npm).
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# ftpsync's push over ssh is tested through a real sshd and ssh client.
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
# git and command projects: a real git daemon and git client, Debian's lftp against Python's
# http.server, and a provider run by Debian's python3.
command -v git >/dev/null 2>&1 || missing+=(git)
[ -x /usr/bin/lftp ] || missing+=(lftp)
[ -x /usr/bin/python3 ] || missing+=(python3)
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || missing+=(postgresql)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}"
fi

# schemathesis (pip) checks the OpenAPI document against the running master: in a venv of its own.
if [ ! -x target/schemathesis-venv/bin/schemathesis ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq python3-venv
    fi
    mkdir -p target
    python3 -m venv target/schemathesis-venv
    target/schemathesis-venv/bin/pip install -q 'schemathesis>=4,<5'
fi

# The processes the tests start (and must end): counted before and after the suite. A zombie has
# ended (only its exit status waits for a parent that reaps it): not counted.
own_processes() {
    ps -eo pid=,stat=,comm= |
        awk '$2 !~ /^Z/ && $3 ~ /^(rsync|mirror-master|mirror-slave|mirror-confine|mirrorctl|chromium|chromedriver|postgres|git-daemon|git|lftp|python3|sshd)$/ {print $1 " " $3}' |
        sort
}
own_processes > target/processes-before.txt 2>/dev/null || { mkdir -p target; own_processes > target/processes-before.txt; }

# axe-core (npm), the accessibility checker the console's tests run in the browser.
if [ ! -f target/axe/node_modules/axe-core/axe.min.js ]; then
    mkdir -p target/axe
    (cd target/axe && npm install --silent --no-audit --no-fund 'axe-core@4')
fi

# pyrainer and resource-sync (pip), the seeds' own clients, unchanged: the tests drive them.
if ! target/pyrainer-venv/bin/python -c 'import pyrainer.cli, microcosm_resourcesync.main' 2>/dev/null; then
    python3 -m venv target/pyrainer-venv
    target/pyrainer-venv/bin/pip install -q 'pyrainer==0.26' 'microcosm-resourcesync==2.0.0' six
fi

# A throwaway PostgreSQL server for the tests of the PostgreSQL backend and of several nodes,
# stopped and removed at the end.
source scripts/postgres.sh
start_postgres -c max_connections=1000 -c fsync=off
export MIRROR_TEST_POSTGRES="$pg_url"
export MIRROR_TEST_POSTGRES_REQUIRED=1

cargo fmt --all -- --check
# The layout rules of docs/layout.md: file and function sizes, SQL only in db/, a typed mirrorctl.
python3 scripts/check-layout.py
# A one-shot build gains nothing from incremental data, which is ~1.4 GB here; disk on CI is shared.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# The end-to-end tests run the real binaries: build them first.
cargo build --workspace --bins --locked
# Every mirrorctl command the README and docs/ show names a command and flags mirrorctl has.
python3 scripts/check-doc-commands.py
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The end-to-end tests again with every test master on PostgreSQL (the database layer's own tests
# ran on both above). Two tests edit a SQLite file by hand, and the nodes' tests are PostgreSQL's
# already: not repeated.
MIRROR_TEST_DATABASE=postgres cargo test -p mirror-tests --test e2e --locked -- \
    --skip newcomer::a_corrupted_project_row --skip newcomer::a_run_id_is_never_used_twice --skip nodes::
stop_postgres

# Nothing of the suite's may outlive it (a helper notices its parent gone within 50 ms: give
# stragglers a few seconds).
for _ in $(seq 50); do
    own_processes > target/processes-after.txt
    left=$(comm -13 target/processes-before.txt target/processes-after.txt)
    [ -z "$left" ] && break
    sleep 0.1
done
if [ -n "$left" ]; then
    echo "the tests left processes running:" >&2
    echo "$left" | while read -r pid name; do echo "  $pid $name: $(tr '\0' ' ' < /proc/"$pid"/cmdline 2>/dev/null)" >&2; done
    exit 1
fi
echo "no process left behind"
