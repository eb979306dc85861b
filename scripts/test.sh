#!/bin/sh
# Runs keyward's test suites with meson and prints one summary line.
#
# Usage: scripts/test.sh [all|plain|sanitize]
#   plain     build/ (debugoptimized) and every test: unit, CLI, ..., the Debian package
#   sanitize  build-sanitize/ with AddressSanitizer + UndefinedBehaviorSanitizer
#   all       both, one after the other
#
# Each build runs every test on SQLite, then the meson suite "postgres"
# (the store, service and concurrency tests) again against a throwaway
# PostgreSQL server from scripts/pg.sh. KEYWARD_TEST_POSTGRES=0 skips that.
# The suite "deb" (the Debian package, built by scripts/deb.sh in its own
# release build) runs in the plain run only: a sanitizer build adds nothing
# to it. So does the suite "perf" (verification under a sign-in flood): its
# ratios are about the optimized build, under the sanitizers they would
# measure the sanitizers.
#
# The last line counts every test case of every run (TAP "ok"/"not ok"):
#   tests: N passed, N failed[, N skipped]
set -eu
cd "$(dirname "$0")/.."
mode=${1:-all}

run_suite() { # dir, meson test options, meson setup options...
	dir=$1
	test_opts=$2
	shift 2
	# The tests are optional in a build that `make run` configured
	# (meson_options.txt); here they are required.
	if [ -f "$dir/build.ninja" ]; then
		meson configure "$dir" -Dtests=enabled
	else
		meson setup "$dir" -Dtests=enabled "$@"
	fi
	ninja -C "$dir"
	status=0
	# shellcheck disable=SC2086 # test_opts holds several words, or none
	meson test -C "$dir" --print-errorlogs --num-processes 2 $test_opts || status=$?
	python3 scripts/test-summary.py "$dir/meson-logs/testlog.json" >>"$summary"
	if [ "${KEYWARD_TEST_POSTGRES:-1}" != 0 ]; then
		echo "tests: the suite \"postgres\" on PostgreSQL"
		# A failure to start the server counts as one failed test.
		scripts/pg.sh meson test -C "$dir" --suite postgres --print-errorlogs \
			--num-processes 2 --logbase pglog || status=$?
		if [ -f "$dir/meson-logs/pglog.json" ]; then
			python3 scripts/test-summary.py "$dir/meson-logs/pglog.json" >>"$summary"
			rm -f "$dir/meson-logs/pglog.json"
		else
			echo "0 1 0" >>"$summary"
		fi
	fi
	return $status
}

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT
failed=0
case "$mode" in
plain | all) run_suite build "" --buildtype=debugoptimized || failed=1 ;;
esac
case "$mode" in
sanitize | all)
	# halt_on_error makes any UBSan finding fail the test that hit it.
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	run_suite build-sanitize "--no-suite deb --no-suite perf" --buildtype=debug -Db_sanitize=address,undefined \
		-Db_lundef=false ||
		failed=1
	;;
esac
case "$mode" in
plain | sanitize | all) ;;
*)
	echo "usage: scripts/test.sh [all|plain|sanitize]" >&2
	exit 2
	;;
esac

awk '{p += $1; f += $2; s += $3}
	END {printf "tests: %d passed, %d failed%s\n", p, f, s ? sprintf(", %d skipped", s) : ""}' "$summary"
awk '{f += $2} END {exit f > 0}' "$summary" || failed=1
exit $failed
