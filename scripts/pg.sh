#!/bin/sh
# Runs a throwaway PostgreSQL server for keyward's tests, and removes it.
#
# Usage: scripts/pg.sh [COMMAND [ARG...]]
#   With a command: starts a fresh cluster in a new temporary folder, runs
#   the command with the variables below exported, then stops the server
#   and deletes the folder (also on failure or interrupt); exits with the
#   command's status. Without one: prints the variables and keeps the
#   server until interrupted.
#
#   KEYWARD_TEST_STORE_URL  postgresql://postgres@127.0.0.1:PORT (no database:
#                           each test creates and drops its own)
#   KEYWARD_TEST_PG_CTL     a pg_ctl command line for this cluster, to which a
#                           test appends "stop -m fast" or "start"
#
# The server listens on 127.0.0.1 only, on a free port, with a Unix socket
# inside the folder; trust authentication is allowed on those alone. As
# root the cluster belongs to the postgres user (PostgreSQL refuses to run
# as root). Every wait is bounded (PG_TIMEOUT seconds, 30).
set -eu

timeout=${PG_TIMEOUT:-30}
bindir=${PG_BIN:-}
if [ -z "$bindir" ]; then
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && bindir=$d
	done
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
	echo "pg.sh: no PostgreSQL server found (install the postgresql package)" >&2
	exit 1
fi

as_owner=""
if [ "$(id -u)" -eq 0 ]; then
	as_owner="runuser -u postgres --"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keyward-pg-XXXXXX")
ctl="$as_owner $bindir/pg_ctl -D $tmp/data -l $tmp/server.log -w -t $timeout"
cleanup() {
	# shellcheck disable=SC2086 # $ctl is a command line
	$ctl stop -m immediate >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
[ -n "$as_owner" ] && chown postgres "$tmp"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# shellcheck disable=SC2086
$as_owner "$bindir/initdb" -D "$tmp/data" -U postgres -E UTF8 --locale=C \
	--auth-local=trust --auth-host=reject >"$tmp/initdb.log" 2>&1 || {
	cat "$tmp/initdb.log" >&2
	exit 1
}
# Trust on the loopback address only; everything else is refused.
cat >"$tmp/data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
cat >>"$tmp/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp'
max_connections = 300
fsync = off
full_page_writes = off
synchronous_commit = off
EOF

# shellcheck disable=SC2086
$ctl start >/dev/null || {
	cat "$tmp/server.log" >&2
	exit 1
}

KEYWARD_TEST_STORE_URL="postgresql://postgres@127.0.0.1:$port"
KEYWARD_TEST_PG_CTL=$ctl
export KEYWARD_TEST_STORE_URL KEYWARD_TEST_PG_CTL

if [ $# -eq 0 ]; then
	echo "KEYWARD_TEST_STORE_URL=$KEYWARD_TEST_STORE_URL"
	echo "KEYWARD_TEST_PG_CTL='$KEYWARD_TEST_PG_CTL'"
	echo "PostgreSQL is running; press Ctrl-C to stop it and delete its files."
	while :; do sleep 3600; done
fi
status=0
"$@" || status=$?
exit $status
