#!/bin/sh
# Runs keyward's benchmarks. Every figure comes with a reference measured in
# the same run, so ratios compare across machines; absolute numbers do not.
# Usage: scripts/bench.sh BUILD_DIR
set -eu
build=${1:-build}
echo "== in-process verification (single thread) =="
"$build/bench/bench_verify" "${BENCH_KEYS:-1000000}" "${BENCH_SECONDS:-2}"
echo
echo "== HTTP verification: wrk against keyward serve (SQLite, PostgreSQL, under a sign-in flood) and against nginx (same run) =="
# bench/http_bench.py stops its servers and removes its temp dir itself,
# also on SIGINT/SIGTERM; scripts/pg.sh gives it a throwaway PostgreSQL
# server (KEYWARD_TEST_STORE_URL) and removes that afterwards; timeout
# bounds the whole part.
here=$(dirname "$0")
timeout -s TERM 300 "$here/pg.sh" python3 "$here/../bench/http_bench.py" "$build"
