#!/bin/sh
# Starts keyward: `keyward serve` on the embedded SQLite store in DATA_DIR.
# Usage: scripts/run.sh BINARY DATA_DIR [LISTEN]
#
# The first start on an empty DATA_DIR creates an account, a console user
# and a root key, and prints the console address, the password and the
# root key once. Stop the server with Ctrl-C; it finishes requests in
# flight and writes pending last-used times before it exits.
set -eu
bin=$1
dir=$2
listen=${3:-${KEYWARD_LISTEN:-127.0.0.1:8080}}
mkdir -p "$dir"
echo "keyward: data in $dir (keyward.db and the pepper file, mode 0600); access log on stderr"
exec "$bin" --data-dir "$dir" serve --listen "$listen"
