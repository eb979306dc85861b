#!/bin/sh
# Proves that the npm packages the tests lock run on Debian 12's own Node.js
# (the `nodejs` package of bookworm, 18.20), whatever Node.js this machine
# carries:
#
#   1. every package in tests/browser/package-lock.json has an engines.node
#      range that admits Debian 12's version (tests/browser/check-engines.mjs,
#      with npm's semver);
#   2. when the `node` on PATH is not that version, the browser tests run
#      once more on Debian 12's Node.js itself: its packages (nodejs,
#      libnode108) are fetched with `apt-get download` from the configured
#      Debian mirror and unpacked with `dpkg -x` into BUILD/debian-node; no
#      package is installed.
#
# Usage: scripts/check-node.sh [BUILD_DIR]   (default build; the browser tests
#        need BUILD_DIR/keyward, which `make build` makes)
# Needs what `scripts/deps.sh test` installs. Exits non-zero on any failure.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
mkdir -p "$build"
build=$(cd "$build" && pwd)

# The newest nodejs version Debian 12 itself publishes (bookworm and its
# security and point-release suites), e.g. 18.20.4+dfsg-1~deb12u3.
debian_nodejs() {
	apt-cache madison nodejs 2>/dev/null |
		awk -F'|' '$3 ~ /debian/ && $3 ~ / bookworm(-security|-updates)?\// { gsub(/ /, "", $2); print $2 }' |
		sort -V | tail -n 1
}
deb_version=$(debian_nodejs)
if [ -z "$deb_version" ] && [ "$(id -u)" -eq 0 ]; then
	apt-get update -qq
	deb_version=$(debian_nodejs)
fi
[ -n "$deb_version" ] || {
	echo "check-node: no bookworm nodejs in apt's lists (apt-get update?)" >&2
	exit 1
}
# 18.20.4+dfsg-1~deb12u3 -> 18.20.4
version=$(echo "$deb_version" | sed -e 's/^[0-9]*://' -e 's/[+~-].*//')
echo "check-node: Debian 12's Node.js is $version (nodejs $deb_version)"

KEYWARD_BUILD_DIR=$build tests/browser/run.sh --install
NODE_PATH=$build/browser-node/node_modules node tests/browser/check-engines.mjs "$version"

current=$(node --version | sed 's/^v//')
if [ "$current" = "$version" ]; then
	echo "check-node: the node on PATH is Debian 12's $version: make test's browser tests run on it"
	exit 0
fi

echo "check-node: the node on PATH is $current: running the browser tests on Debian 12's $version too"
dir=$build/debian-node
if [ "$(cat "$dir/version" 2>/dev/null)" != "$deb_version" ]; then
	rm -rf "$dir"
	mkdir -p "$dir/debs"
	libnode=$(apt-cache show "nodejs=$deb_version" | sed -n 's/^Depends:.*\(libnode[0-9]*\) (= [^)]*).*/\1/p' | head -n 1)
	[ -n "$libnode" ] || {
		echo "check-node: cannot tell which libnode nodejs $deb_version needs" >&2
		exit 1
	}
	# Debian's libnode loads some of its built-in modules from
	# /usr/share/nodejs, shipped by these packages (its Depends).
	builtins="node-acorn node-cjs-module-lexer node-undici"
	tmp=$(mktemp -d)
	chmod 0755 "$tmp" # apt's sandbox user downloads into it
	# shellcheck disable=SC2086 # one argument per package
	(cd "$tmp" && apt-get download -q "nodejs=$deb_version" "$libnode=$deb_version" $builtins 2>&1) |
		grep -v '^W: Download is performed unsandboxed' || true
	for deb in "$tmp"/*.deb; do
		dpkg -x "$deb" "$dir/root"
	done
	rm -rf "$tmp"
	echo "$deb_version" >"$dir/version"
fi
# Debian's node finds libnode through the loader's path.
cat >"$dir/node" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$dir/root/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch) exec $dir/root/usr/bin/node "\$@"
EOF
chmod +x "$dir/node"
got=$("$dir/node" --version | sed 's/^v//')
[ "$got" = "$version" ] || {
	echo "check-node: the unpacked node says $got, not $version" >&2
	exit 1
}

[ -x "$build/keyward" ] || {
	echo "check-node: $build/keyward not built (make build)" >&2
	exit 1
}
# Debian's node reads those built-in modules at their absolute paths under
# /usr/share/nodejs: a private mount namespace lays the unpacked tree over
# /usr/share for this one run (read-only, nothing on the host changes).
[ "$(id -u)" -eq 0 ] || {
	echo "check-node: running Debian's node needs root (a private mount namespace)" >&2
	exit 1
}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
KEYWARD_NODE=$dir/node KEYWARD_BIN=$build/keyward KEYWARD_BUILD_DIR=$build \
	KEYWARD_SCREENSHOTS=$build/browser-screenshots-node$version \
	unshare --mount --propagation private sh -c \
	'mount -t overlay overlay -o "lowerdir=$1:/usr/share" /usr/share && exec tests/browser/run.sh' \
	sh "$dir/root/usr/share" >"$out" || status=$?
cat "$out"
passed=$(grep -c '^ok ' "$out" || true)
failed=$(grep -c '^not ok ' "$out" || true)
echo "check-node: browser tests on Node.js $version: $passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
