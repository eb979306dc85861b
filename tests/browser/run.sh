#!/bin/sh
# The browser tests of the web console (meson test "browser").
#
# Installs the packages pinned by package-lock.json (playwright-core, and
# semver for check-engines.mjs) with `npm ci` into
# $KEYWARD_BUILD_DIR/browser-node (again only when the lock file changed),
# then runs console.test.mjs, which prints TAP. playwright-core never
# downloads a browser: it drives Debian's /usr/bin/chromium
# (scripts/deps.sh test installs it, with nodejs and npm).
#
# Usage: run.sh             install if needed, then run the tests
#        run.sh --install   install if needed, and stop there
#
# Environment (tests/meson.build sets the first two): KEYWARD_BIN, the
# binary under test; KEYWARD_BUILD_DIR, where the packages and the
# screenshots go; KEYWARD_NODE, the Node.js that runs the tests (default:
# `node` on PATH; scripts/check-node.sh points it at Debian 12's own).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${KEYWARD_BUILD_DIR:-$here/../../build}
deps=$build/browser-node
node=${KEYWARD_NODE:-node}
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

# A set-up failure is one failed test case with the reason, not a silent 0.
fail_setup() {
	echo "1..1"
	echo "not ok 1 - set-up: $1"
	exit 1
}

command -v "$node" >/dev/null || fail_setup "$node not found (scripts/deps.sh test installs nodejs)"
command -v npm >/dev/null || fail_setup "npm not found (scripts/deps.sh test installs npm)"

if ! cmp -s "$here/package-lock.json" "$deps/package-lock.json" ||
	[ ! -f "$deps/node_modules/playwright-core/package.json" ]; then
	mkdir -p "$deps"
	cp "$here/package.json" "$here/package-lock.json" "$deps/"
	# npm's output goes to stderr: stdout is TAP. npm ci deletes node_modules
	# first, so an interrupted install is redone next time.
	(cd "$deps" && npm ci --no-audit --no-fund --ignore-scripts) >&2 || {
		rm -f "$deps/package-lock.json"
		fail_setup "npm ci of the locked packages failed (see stderr)"
	}
fi
[ "${1:-}" != --install ] || exit 0

[ -x "${KEYWARD_CHROMIUM:-/usr/bin/chromium}" ] ||
	fail_setup "${KEYWARD_CHROMIUM:-/usr/bin/chromium} not found (scripts/deps.sh test installs chromium)"
echo "# Node.js $("$node" --version)"
export KEYWARD_BROWSER_NODE_MODULES="$deps/node_modules"
export KEYWARD_SCREENSHOTS="${KEYWARD_SCREENSHOTS:-$build/browser-screenshots}"
exec "$node" "$here/console.test.mjs"
