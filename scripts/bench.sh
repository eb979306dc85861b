#!/bin/sh
# Runs keyward's benchmarks. Every figure comes with a reference measured in
# the same run, so ratios compare across machines; absolute numbers do not.
# docs/benchmarks.md says what each figure is and how to read it.
#
# Usage: scripts/bench.sh BUILD_DIR
#
# Settings (environment variables, all optional):
#   BENCH_KEYS (2000), BENCH_SECONDS (2)   in-process verification: keys, seconds a figure
#   BENCH_HTTP_KEYS (10000)                keys created on each store for the HTTP rounds
#   BENCH_HTTP_ROUNDS (3)                  interleaved rounds; figures are medians over them
#   BENCH_HTTP_SHAPES ("1x32 2x64")        wrk load shapes, THREADSxCONNECTIONS
#   BENCH_HTTP_SECONDS (5)                 a round of keyward against nginx and the
#                                          trivial libmicrohttpd handler
#   BENCH_HTTP_EXTRA_SECONDS (3)           a round of the other parts
#   BENCH_HTTP_PARTS ("reference stores flood")
#                                          which HTTP parts run; "extra" adds GET /v1/auth,
#                                          the access log off and one core each
#   BENCH_CHURN_PER_S (20)                 keys created and deleted a second during the
#                                          verification-under-writes rounds
#   BENCH_STORE_QUERY_METRIC               the /metrics counter of store queries (default:
#                                          keyward_verify_store_lookups_total)
#   BENCH_NO_POSTGRES=1                    leave the PostgreSQL node out
#   BENCH_TIMEOUT (1200)                   seconds the HTTP part may take in all
#   NGINX (/usr/sbin/nginx), WRK (wrk)     the reference server and the load generator
set -eu
build=${1:-build}
echo "== in-process verification (single thread) =="
"$build/bench/bench_verify" "${BENCH_KEYS:-1000000}" "${BENCH_SECONDS:-2}"
echo
echo "== HTTP: keyward serve against nginx and a trivial libmicrohttpd handler, on SQLite and PostgreSQL, under writes and a sign-in flood (all in the same run) =="
# bench/http_bench.py starts nginx, bench/trivial_server and keyward on
# 127.0.0.1 with free ports, and stops them and removes its temp dir itself,
# also on SIGINT/SIGTERM; scripts/pg.sh gives it a throwaway PostgreSQL
# server (KEYWARD_TEST_STORE_URL) and removes that afterwards; timeout
# bounds the whole part.
here=$(dirname "$0")
if [ "${BENCH_NO_POSTGRES:-0}" = 1 ]; then
	timeout -s TERM "${BENCH_TIMEOUT:-1200}" python3 "$here/../bench/http_bench.py" "$build"
else
	timeout -s TERM "${BENCH_TIMEOUT:-1200}" "$here/pg.sh" python3 "$here/../bench/http_bench.py" "$build"
fi
