#!/bin/sh
# Runs keyward's benchmarks. Every figure comes with a reference measured in
# the same run, so ratios compare across machines; absolute numbers do not.
# Usage: scripts/bench.sh BUILD_DIR
set -eu
build=${1:-build}
echo "== in-process verification (single thread) =="
"$build/bench/bench_verify" "${BENCH_KEYS:-2000}" "${BENCH_SECONDS:-2}"
