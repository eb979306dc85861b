#!/bin/sh
# Proves the README's first command twice in a row: `make run` starts
# keyward on a fresh data dir (first-run output once, /healthz answers),
# stops cleanly on SIGINT, and a second `make run` reuses the data dir (no
# second first run, the same account) and the build (nothing recompiled).
#
# Usage: scripts/check-make-run.sh   (loopback only; stops by itself)
set -eu
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pid=""
cleanup() {
	[ -z "$pid" ] || kill -INT "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
listen=127.0.0.1:$port

# python3 comes with Meson; curl is not in the build profile.
healthy() {
	python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
		"http://$listen/healthz" >/dev/null 2>&1
}

# start N: `make run` in the background, output in $work/runN.log; waits up
# to 60 s for /healthz (the first `make run` may still be building).
start() {
	setsid make run DATA_DIR="$work/data" LISTEN="$listen" >"$work/run$1.log" 2>&1 </dev/null &
	pid=$!
	i=0
	until healthy; do
		i=$((i + 1))
		if [ $i -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
			cat "$work/run$1.log" >&2
			echo "check-make-run: make run ($1) did not serve /healthz" >&2
			exit 1
		fi
		sleep 0.1
	done
}
stop() { # SIGINT to the whole `make run` process group, as Ctrl-C sends
	kill -INT "-$pid"
	status=0
	wait "$pid" || status=$?
	pid=""
	[ "$status" -eq 0 ] || {
		cat "$work/run$1.log" >&2
		echo "check-make-run: make run ($1) exited $status on Ctrl-C" >&2
		exit 1
	}
}

start 1
stop 1
grep -q '^First run:' "$work/run1.log" || {
	cat "$work/run1.log" >&2
	echo "check-make-run: the first make run printed no first-run output" >&2
	exit 1
}
account=$(sed -n 's/^First run: created the account "[^"]*" (\(acc_[A-Za-z0-9]*\)).*/\1/p' "$work/run1.log")

start 2
stop 2
if grep -q '^First run:' "$work/run2.log"; then
	echo "check-make-run: the second make run made a new first run instead of reusing $work/data" >&2
	exit 1
fi
if grep -qE '^\[[0-9]+/[0-9]+\] (Compiling|Linking)' "$work/run2.log"; then
	echo "check-make-run: the second make run rebuilt keyward" >&2
	exit 1
fi
build/keyward --data-dir "$work/data" account list | grep -q "$account" || {
	echo "check-make-run: the account of the first run ($account) is gone" >&2
	exit 1
}
echo "check-make-run: ok: make run twice on one data dir (one first run, account $account kept, no rebuild)"
