#!/usr/bin/env bash
# Starts the private PostgreSQL server the tests talk to: Debian's PostgreSQL (installed when
# missing), its data directory under $FNVM_SERVICES_DIR/postgres, listening on 127.0.0.1 only,
# at a fixed unusual port so that it never meets a system cluster. Creates the tests' role
# (password authentication, CREATEDB so that each test can make its own database) and database.
# Idempotent and fast when the server already runs; concurrent invocations take turns on a lock.
#
# Called by scripts/services.sh, which sets FNVM_SERVICES_DIR (`scripts/services.sh` passes no
# argument; `postgres.sh stop` stops the server). Progress goes to stderr; stdout carries
# exactly one line:
#   FNVM_TEST_POSTGRES_URL=postgres://USER:PASSWORD@127.0.0.1:PORT/DB
set -euo pipefail

: "${FNVM_SERVICES_DIR:?run this through scripts/services.sh}"

port=${FNVM_TEST_POSTGRES_PORT:-55432}
# Fixed credentials: the server listens on loopback only and holds nothing but test data.
user=fnvm_test
password=fnvm_test_password
db=fnvm_test
admin=fnvm_admin

dir=$FNVM_SERVICES_DIR/postgres
data=$dir/data
log=$dir/postgres.log
url="postgres://$user:$password@127.0.0.1:$port/$db"

say() { echo "postgres: $*" >&2; }
die() {
    say "$*"
    exit 1
}

mkdir -p "$FNVM_SERVICES_DIR"
# One invocation at a time: a second one waits here, then finds the server running.
exec 9>"$FNVM_SERVICES_DIR/postgres.lock"
flock -w 600 9 || die "timed out waiting for $FNVM_SERVICES_DIR/postgres.lock"

# Runs a command as the server's owner: initdb and postgres refuse to run as root, so as root
# they run as Debian's `postgres` system user.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

install_postgres() {
    say "installing Debian's postgresql package"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "not root and no sudo: install the postgresql package"
        sudo=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Stale package lists are the usual reason for a failed install: update once and retry.
    if ! "${sudo[@]}" apt-get install -y -q postgresql >&2; then
        "${sudo[@]}" apt-get update -q >&2
        "${sudo[@]}" apt-get install -y -q postgresql >&2
    fi
}

bin=$(bindir || true)
if [ -z "$bin" ]; then
    # Nothing installed: nothing to stop.
    if [ "${1:-}" = stop ]; then exit 0; fi
    install_postgres
    bin=$(bindir || true)
    [ -n "$bin" ] || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb found"
fi
major=$(basename "$(dirname "$bin")")

# Client commands as the administrator, over TCP with the password from the data directory.
admin_psql() {
    PGPASSWORD=$(cat "$dir/admin.password") "$bin/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$port" -U "$admin" -d postgres "$@"
}

# Whether the process of the server's lock file is alive. A server killed with SIGKILL whose
# parent has not reaped it yet lingers as a zombie, which pg_ctl and postgres itself take for a
# running server.
alive() {
    local pid state
    pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$state" != Z ]
}

running() { alive && as_owner "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; }

# `postgres.sh stop`: stops the server this script started (if any), leaving its data.
if [ "${1:-}" = stop ]; then
    if [ -n "${bin:-}" ] && [ -f "$data/PG_VERSION" ] && running; then
        say "stopping the server"
        as_owner "$bin/pg_ctl" stop -D "$data" -m fast >&2
    fi
    exit 0
fi

# Fast path: our server runs and the tests' role can log in.
if [ -f "$data/PG_VERSION" ] && running &&
    PGPASSWORD=$password PGCONNECT_TIMEOUT=5 "$bin/psql" -X -q -tA -h 127.0.0.1 -p "$port" \
        -U "$user" -d "$db" -c 'SELECT 1' >/dev/null 2>&1; then
    echo "FNVM_TEST_POSTGRES_URL=$url"
    exit 0
fi

mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no postgres system user (is the postgresql package installed?)"
    chown postgres:postgres "$dir"
    # The server runs as `postgres`: it must be able to reach its directory.
    runuser -u postgres -- test -w "$dir" ||
        die "the postgres user cannot reach $dir: give its parent directories o+x"
fi

# A data directory is usable once initdb has finished, which the rename below marks; anything
# else (an interrupted initdb, a cluster of another major version, a lost administrator
# password) is test data to redo.
for tmp in "$dir"/data.init.*; do
    if [ -e "$tmp" ]; then rm -rf "$tmp"; fi
done
if [ -e "$data" ] && { [ "$(cat "$data/PG_VERSION" 2>/dev/null || true)" != "$major" ] ||
    [ ! -s "$dir/admin.password" ]; }; then
    if running; then as_owner "$bin/pg_ctl" stop -D "$data" -m immediate >&2 || true; fi
    say "removing unusable data directory $data"
    rm -rf "$data"
fi

if [ ! -e "$data" ]; then
    say "initialising a PostgreSQL $major cluster in $data"
    tmp=$dir/data.init.$$
    # The administrator's password, readable by the server's owner and whoever runs this script.
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin.password")
    pwfile=$(mktemp "$dir/pwfile.XXXXXX")
    cp "$dir/admin.password" "$pwfile"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$pwfile"; fi
    as_owner "$bin/initdb" -D "$tmp" -U "$admin" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 >&2
    rm -f "$pwfile"
    cat >>"$tmp/postgresql.conf" <<EOF

# fnvm test server (scripts/services/postgres.sh)
listen_addresses = '127.0.0.1'
port = $port
# No Unix socket: clients use TCP, and a socket path under a deep directory can exceed the
# 107-byte limit.
unix_socket_directories = ''
# Tests run in parallel, each with its own pool.
max_connections = 400
EOF
    as_owner mv "$tmp" "$data"
fi

if ! running; then
    say "starting the server on 127.0.0.1:$port (log: $log)"
    # A lock file left by a dead server (one killed, still a zombie) would stop the new one.
    if [ -e "$data/postmaster.pid" ] && ! alive; then rm -f "$data/postmaster.pid"; fi
    touch "$log"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$log"; fi
    # The server outlives this script: it must not inherit its descriptors (the lock above,
    # which it would hold forever, or a pipe a caller waits on for end of file).
    if ! (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        as_owner "$bin/pg_ctl" start -D "$data" -l "$log" -w -t 120 >&2
    ); then
        tail -n 20 "$log" >&2 || true
        die "the server did not start (see its log above; is port $port taken?)"
    fi
fi

# pg_ctl -w returns once the server accepts connections; a server that was already running may
# still be recovering.
for _ in $(seq 1 120); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then break; fi
    sleep 0.5
done
if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
    tail -n 20 "$log" >&2 || true
    die "the server does not accept connections on 127.0.0.1:$port"
fi

say "creating role $user and database $db"
if [ "$(admin_psql -tA -c "SELECT 1 FROM pg_roles WHERE rolname = '$user'")" != 1 ]; then
    admin_psql -c "CREATE ROLE $user LOGIN CREATEDB PASSWORD '$password'"
else
    admin_psql -c "ALTER ROLE $user LOGIN CREATEDB PASSWORD '$password'"
fi
if [ "$(admin_psql -tA -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
    admin_psql -c "CREATE DATABASE $db OWNER $user"
fi

echo "FNVM_TEST_POSTGRES_URL=$url"
