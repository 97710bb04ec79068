# Sourced by scripts/test.sh and bench/backends.sh: a throwaway PostgreSQL server, its own cluster
# in a temporary directory on a free loopback port. `start_postgres [server options...]` sets
# `pg_url` (postgres://postgres@127.0.0.1:PORT); `stop_postgres` stops it and removes its directory
# (also on exit). PostgreSQL refuses to run as root: as root it runs as the `postgres` user.
PG_BIN=${PG_BIN:-}
[ -x "$PG_BIN/initdb" ] || PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
pg_dir=$(mktemp -d /tmp/mirror-pg.XXXXXX)
if [ "$(id -u)" -eq 0 ]; then chown postgres "$pg_dir"; AS_PG=(runuser -u postgres --); else AS_PG=(); fi

stop_postgres() {
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}

start_postgres() {
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    trap stop_postgres EXIT
    "${AS_PG[@]}" "$PG_BIN/initdb" -D "$pg_dir/data" -A trust -U postgres >/dev/null
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start -o \
        "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 $*" >/dev/null
    pg_url="postgres://postgres@127.0.0.1:$port"
}
