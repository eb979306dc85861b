#!/bin/sh
# Runs the soak test: minutes of mixed load against `keyward serve` built
# with AddressSanitizer + UBSan, watching its RSS, descriptors and threads
# (tests/soak/soak.py; docs/testing.md explains its bounds and output).
#
# Usage: scripts/soak.sh
#   SOAK_SECONDS (600) sets how long the load runs; the bounds are
#   settings of tests/soak/soak.py (SOAK_RSS_GROWTH_MIB, ...);
#   SOAK_QUARANTINE_MB (16) is ASan's quarantine, see below.
#
# The binary is the one of `make test-sanitize`: build-sanitize/, configured
# with the same options as scripts/test.sh when it is not there yet.
set -eu
cd "$(dirname "$0")/.."
dir=build-sanitize
if [ ! -f "$dir/build.ninja" ]; then
	meson setup "$dir" --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false
fi
sanitize=$(meson introspect --buildoptions "$dir" |
	python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
if [ "$sanitize" != "address,undefined" ]; then
	echo "soak: $dir is built with b_sanitize=$sanitize, not address,undefined" >&2
	exit 1
fi
ninja -C "$dir" keyward

# As in scripts/test.sh: any finding aborts the server, which fails the run;
# LeakSanitizer checks the heap when the server exits. The quarantine (freed
# memory ASan holds back to catch a use after free) is 16 MiB instead of
# 256: ASan's allocator keeps what each size class ever held, and with a
# large quarantine that high-water mark creeps up for minutes while
# keyward's own heap stays flat, which would hide a leak in the RSS curve
# (docs/testing.md). SOAK_QUARANTINE_MB changes it.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1:quarantine_size_mb="${SOAK_QUARANTINE_MB:-16}"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
seconds=${SOAK_SECONDS:-600}
# The load stops itself; timeout bounds setup, the final checks and the
# server's exit on top of it.
KEYWARD_BIN=$dir/keyward exec timeout -s TERM $((seconds + 600)) python3 tests/soak/soak.py
