#!/bin/sh
# Style and static checks: clang-format, cppcheck, clang-tidy (.clang-tidy).
# Usage: scripts/lint.sh [BUILD_DIR]   (clang-tidy reads its compile_commands.json)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
files=$(git ls-files '*.c' '*.h')
src=$(git ls-files 'src/*.c')

echo "lint: clang-format"
clang-format --dry-run --Werror $files

echo "lint: cppcheck"
cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	--inline-suppr --std=c11 -D_GNU_SOURCE -Isrc src

echo "lint: clang-tidy"
[ -f "$build/compile_commands.json" ] || meson setup "$build" >/dev/null
# shellcheck disable=SC2086 # one argument per file
clang-tidy -p "$build" --quiet $src 2>&1 | grep -v 'warnings generated' || true
clang-tidy -p "$build" --quiet $src >/dev/null 2>&1
echo "lint: clean"
