#!/bin/sh
# Builds keyward's libFuzzer targets with clang, ASan and UBSan, and runs
# them (see fuzz/):
#   fuzz_input  every user-input parser (keys, names, emails, peppers), for
#               FUZZ_SECONDS (default 60);
#   fuzz_http   the whole request path, raw bytes through the real server,
#               for FUZZ_RUNS executions (default 10 million) on FUZZ_JOBS
#               processes (default: one per CPU).
# Usage: scripts/fuzz.sh [SECONDS]. Exits non-zero on any finding.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-60}
runs=${FUZZ_RUNS:-10000000}
jobs=${FUZZ_JOBS:-$(nproc)}
out=build-fuzz
if [ ! -f "$out/build.ninja" ]; then
	CC=clang meson setup "$out" --buildtype=debugoptimized -Dtests=disabled -Dfuzzing=true \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined'
fi
ninja -C "$out" fuzz_input fuzz_http

# fuzz_input seeds: a real key, a name, an email, a keyring, forwarding
# headers, an origin.
mkdir -p "$out/corpus-input"
printf 'kw_production_jNBLzISEA1DWLKCzcGiWAURw8rOiLq0NCpF7wwKdv1H0Lt5Ya' >"$out/corpus-input/key"
printf '  Production CRM \xf0\x9f\x94\x91 ' >"$out/corpus-input/name"
printf 'admin@example.com' >"$out/corpus-input/email"
printf '1:%064d\n2:%064d\n' 0 1 >"$out/corpus-input/pepper"
printf '198.51.100.1, [2001:db8::7]:4711, 10.0.0.2' >"$out/corpus-input/xff"
printf 'for="[2001:db8:cafe::17]:4711";proto=https, for=_hidden, for=unknown' >"$out/corpus-input/forwarded"
printf 'https://keys.example.com:8443' >"$out/corpus-input/origin"
"$out/fuzz_input" -max_total_time="$seconds" -max_len=512 -print_final_stats=1 "$out/corpus-input"

# fuzz_http seeds: one request of each kind (fuzz/http-seeds), which the
# fuzzer mutates; placeholders such as @ROOT@ stand for real credentials.
mkdir -p "$out/corpus-http"
cp fuzz/http-seeds/* "$out/corpus-http/"
# Leaks are checked once, when each process exits (ASAN_OPTIONS): checking
# after every input (-detect_leaks=1) scans the whole heap each time the
# server's threads have allocations in flight, and costs 60 % of the time.
per_job=$(((runs + jobs - 1) / jobs))
i=0
pids=""
while [ "$i" -lt "$jobs" ]; do
	ASAN_OPTIONS=detect_leaks=1 "$out/fuzz_http" -runs="$per_job" -max_len=4096 -timeout=30 -detect_leaks=0 \
		-print_final_stats=1 -seed=$((i + 1)) "$out/corpus-http" \
		>"$out/fuzz_http.$i.log" 2>&1 &
	pids="$pids $!"
	i=$((i + 1))
done
status=0
for pid in $pids; do
	wait "$pid" || status=1
done
total=0
for log in "$out"/fuzz_http.*.log; do
	n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	total=$((total + ${n:-0}))
done
for log in "$out"/fuzz_http.*.log; do
	if grep -q "ERROR: libFuzzer\|==ERROR: \|runtime error:\|deadly signal\|ALARM: working" "$log"; then
		status=1
		tail -40 "$log"
	fi
done
echo "fuzz_http: $total executions on $jobs processes, $([ $status -eq 0 ] && echo 'no finding' || echo 'FINDINGS: see build-fuzz/fuzz_http.*.log')"
exit $status
