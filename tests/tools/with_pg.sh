#!/bin/sh
# Runs a command beside a private, throwaway PostgreSQL server:
#   with_pg.sh COMMAND [ARGS...]
# initdb into a temporary directory, the server listening on a Unix socket
# there only (no TCP port), a database "tillside" owned by the superuser
# "tillside", and TS_TEST_PG=<libpq URI> exported for the command. The server
# and its files go when the command ends. PostgreSQL refuses to run as root,
# so as root (CI) the server runs as the "postgres" system user.
# fsync is off (TS_PG_FSYNC=on for benchmarks): these tests are about what
# the hub stores, not power cuts.
set -eu
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
    echo "with_pg.sh: the PostgreSQL server is not installed (apt-get install postgresql;" \
        "./run test installs it)" >&2
    exit 1
fi
dir=$(mktemp -d /tmp/ts-pg.XXXXXX)
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$dir"
stop() {
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM
as_pg "$PGBIN/initdb" -D "$dir/data" -A trust -U tillside --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
if ! as_pg "$PGBIN/pg_ctl" -D "$dir/data" -w -t 60 -l "$dir/server.log" \
    -o "-k $dir -c listen_addresses= -c fsync=${TS_PG_FSYNC:-off} -c max_connections=${TS_PG_MAX_CONN:-100}" start >/dev/null; then
    cat "$dir/server.log" >&2
    exit 1
fi
as_pg "$PGBIN/createdb" -h "$dir" -U tillside tillside
export TS_TEST_PG="postgresql:///tillside?host=$dir&user=tillside"
export TS_TEST_PG_DIR="$dir"
rc=0
"$@" || rc=$?
exit $rc
