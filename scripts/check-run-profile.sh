#!/bin/sh
# Proves that `make run` needs nothing but what `scripts/deps.sh build`
# installs: it configures and builds keyward as `make run` does, in a
# scratch build folder, with every other package made invisible to Meson.
#
#   - pkg-config sees only the .pc files of the build profile's packages and
#     of what they depend on (PKG_CONFIG_LIBDIR), so a dependency() on, say,
#     cmocka or libcurl fails here until its -dev package joins the profile;
#   - PATH holds only the programs of those packages and of Debian's
#     essential ones, so a find_program() of python3 is fine (Meson depends
#     on it) but of node, nginx or cmake is not.
#
#   - a library found without pkg-config is invisible to neither, so every
#     system header the build read must belong to those packages too.
#
# Whatever else this machine has installed (the test packages, say) stays
# invisible, so the check holds on a machine that has everything.
# Usage: scripts/check-run-profile.sh   (needs the build profile installed)
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

# Installed packages reached from "$@" through Depends and Pre-Depends,
# one per line. Of an "a | b" every installed alternative counts; a virtual
# package stands for the installed packages that provide it.
closure() {
	dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }' | sort -u >"$work/installed"
	dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Provides}\n' |
		awk '$1 == "ii" { for (i = 3; i <= NF; i++) { v = $i; sub(/,$/, "", v); if (v !~ /[()]/) print v, $2 } }' |
		sort -u >"$work/provides"
	: >"$work/seen"
	todo=$(printf '%s\n' "$@" | sort -u)
	while [ -n "$todo" ]; do
		printf '%s\n' $todo >>"$work/seen"
		sort -u -o "$work/seen" "$work/seen"
		# shellcheck disable=SC2086 # one argument per package
		dpkg-query -W -f='${Depends}, ${Pre-Depends}\n' $todo |
			tr ',|' '\n\n' | sed -e 's/([^)]*)//g' -e 's/:any//' -e 's/ //g' | grep -v '^$' | sort -u >"$work/deps"
		{
			comm -12 "$work/deps" "$work/installed"
			join "$work/deps" "$work/provides" | cut -d' ' -f2
		} | sort -u | comm -23 - "$work/seen" >"$work/todo"
		todo=$(cat "$work/todo")
	done
	cat "$work/seen"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck disable=SC2046 # one argument per package
build_pkgs=$(scripts/deps.sh --list build)
for p in $build_pkgs; do
	dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || {
		echo "check-run-profile: $p (build profile) is not installed: run scripts/deps.sh build" >&2
		exit 1
	}
done
essential=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Essential}\n' | awk '$1 == "ii" && $3 == "yes" { print $2 }')
# shellcheck disable=SC2086 # one argument per package
closure $build_pkgs $essential >"$work/pkgs"
# Package names may carry an architecture (libc6:amd64); dpkg -L takes both.
mkdir "$work/pc" "$work/bin"
# shellcheck disable=SC2046 # one argument per package
dpkg -L $(cat "$work/pkgs") 2>/dev/null | sort -u >"$work/files"
grep '/pkgconfig/[^/]*\.pc$' "$work/files" | while read -r f; do
	[ -f "$f" ] && ln -sf "$f" "$work/pc/"
done
# Programs, including those dpkg lists under /bin while they live in /usr/bin
# (merged /usr) and the alternatives (cc, c++) their packages register.
grep -E '^(/usr)?/s?bin/[^/]+$' "$work/files" | while read -r f; do
	[ -x "$f" ] && ln -sf "$f" "$work/bin/"
done
for alt in cc c99 pkg-config; do
	target=$(command -v "$alt" || true)
	[ -n "$target" ] && [ -e "$work/bin/$(basename "$(readlink -f "$target")")" ] && ln -sf "$target" "$work/bin/$alt"
done

echo "check-run-profile: the build profile ($(echo "$build_pkgs" | wc -w) packages, $(wc -l <"$work/pkgs") with their dependencies and Debian's essential ones): $(ls "$work/pc" | wc -l) .pc files, $(ls "$work/bin" | wc -l) programs visible"

# The restriction itself must hold, or the check proves nothing: a package
# that only the test profile installs must be invisible.
export PATH="$work/bin" PKG_CONFIG_LIBDIR="$work/pc"
unset PKG_CONFIG_PATH
if pkg-config --exists cmocka; then
	echo "check-run-profile: cmocka is visible through the restricted pkg-config: the check is broken" >&2
	exit 1
fi
if command -v node >/dev/null 2>&1 || command -v nginx >/dev/null 2>&1; then
	echo "check-run-profile: node or nginx is visible on the restricted PATH: the check is broken" >&2
	exit 1
fi

# Configure and build exactly as `make run` does (the Makefile's defaults).
if ! meson setup "$work/build" "$top" --buildtype=debugoptimized >"$work/log" 2>&1 ||
	! ninja -C "$work/build" >>"$work/log" 2>&1; then
	cat "$work/log" >&2
	echo "check-run-profile: FAILED: the build of make run needs a package that scripts/deps.sh build does not install" >&2
	exit 1
fi
grep -E "^ *(Run-time dependency|Library|Program|Dependency) " "$work/log" | sed 's/^/  /'

# A library found without pkg-config (find_library: libunistring has no .pc
# file) is not hidden by PKG_CONFIG_LIBDIR, so check what the build really
# used: every system header a compiler read (ninja's record of each object's
# dependencies) must be a file of the profile's packages.
ninja -C "$work/build" -t deps | sed -n 's|^ *\(/[^ ]*\)$|\1|p' | sort -u >"$work/headers"
grep -v "^$top/" "$work/headers" | comm -23 - "$work/files" >"$work/foreign" || true
if ! grep -q '^/usr/include/stdio\.h$' "$work/headers"; then
	echo "check-run-profile: ninja listed no system header (not even stdio.h): the check is broken" >&2
	exit 1
fi
if [ -s "$work/foreign" ]; then
	while read -r h; do
		echo "check-run-profile: $h ($(dpkg -S "$h" 2>/dev/null | cut -d: -f1 | head -n 1)) is not from the build profile" >&2
	done <"$work/foreign"
	echo "check-run-profile: FAILED: the build of make run includes headers of a package that scripts/deps.sh build does not install" >&2
	exit 1
fi
echo "check-run-profile: the $(grep -cv "^$top/" "$work/headers") system headers the build includes all come from the build profile"
"$work/build/keyward" --version >/dev/null
echo "check-run-profile: ok: make run configures and builds with the build profile alone"
