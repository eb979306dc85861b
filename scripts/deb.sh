#!/bin/sh
# Builds the Debian package keyward_VERSION_ARCH.deb from this tree with
# Debian's own tools (meson, dpkg-buildflags, dpkg-shlibdeps, dpkg-deb);
# nothing is downloaded. The sources are packaging/keyward.1 (the man page)
# and packaging/debian/ (control template, maintainer scripts, unit, config
# file, copyright, changelog); docs/install.md says what the package does.
#
# Usage: scripts/deb.sh [OUTDIR]     (default: the repository root)
#   KEYWARD_DEB_BUILD    the build folder (default build-deb; relative to the
#                        repository root): a release build
#                        with Debian's hardening flags, tests disabled,
#                        --prefix=/usr, staged with `meson install --destdir`
#   KEYWARD_DEB_VERSION  the package version; default: that of
#                        packaging/debian/changelog when its upstream part is
#                        meson's version, else MESON_VERSION-1. A version the
#                        changelog does not have gets an entry of its own.
#
# Progress goes to stderr; stdout is the path of the package.
set -eu
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
top=$(dirname "$(dirname "$self")")
out=$(mkdir -p "${1:-$top}" && cd "${1:-$top}" && pwd)
cd "$top"
build=${KEYWARD_DEB_BUILD:-build-deb}
pkg=packaging/debian

# One run per build folder at a time: two test runs may share it.
if [ -z "${KEYWARD_DEB_LOCKED:-}" ]; then
	mkdir -p "$build"
	KEYWARD_DEB_LOCKED=1 exec flock "$build" "$self" "$out"
fi

umask 022
export LC_ALL=C.UTF-8

# -- the binary -------------------------------------------------------------
if [ ! -f "$build/build.ninja" ]; then
	# Debian's hardening flags (fortify, relro, bindnow), as a Debian build has them.
	env DEB_BUILD_MAINT_OPTIONS=hardening=+all \
		CFLAGS="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CFLAGS)" \
		CPPFLAGS="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get CPPFLAGS)" \
		LDFLAGS="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)" \
		meson setup "$build" --prefix=/usr --buildtype=release -Dtests=disabled >&2
fi
ninja -C "$build" keyward >&2

upstream=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])' \
	<"$build/meson-info/intro-projectinfo.json")
logged=$(dpkg-parsechangelog -l "$pkg/changelog" -S Version)
if [ -n "${KEYWARD_DEB_VERSION:-}" ]; then
	version=$KEYWARD_DEB_VERSION
elif [ "${logged%-*}" = "$upstream" ]; then
	version=$logged
else
	version=$upstream-1
fi
arch=$(dpkg --print-architecture)

# -- the tree of the package ------------------------------------------------
stage=$(cd "$build" && pwd)/pkgroot
rm -rf "$stage"
meson install -C "$build" --no-rebuild --quiet --destdir "$stage"
strip --remove-section=.comment --remove-section=.note "$stage/usr/bin/keyward"

doc=$stage/usr/share/doc/keyward
install -d "$stage/usr/share/man/man1" "$doc" "$stage/lib/systemd/system" "$stage/etc/keyward" \
	"$stage/usr/share/lintian/overrides"
gzip -9n <packaging/keyward.1 >"$stage/usr/share/man/man1/keyward.1.gz"
install -m 0644 "$pkg/copyright" "$doc/copyright"
install -m 0644 "$pkg/keyward.service" "$stage/lib/systemd/system/keyward.service"
install -m 0644 "$pkg/keyward.conf" "$stage/etc/keyward/keyward.conf"
install -m 0644 "$pkg/lintian-overrides" "$stage/usr/share/lintian/overrides/keyward"

# The changelog, with an entry for a version it does not have.
date=$(dpkg-parsechangelog -l "$pkg/changelog" -S Date)
[ "$version" = "$logged" ] || date=$(date -R)
{
	if [ "$version" != "$logged" ]; then
		printf 'keyward (%s) unstable; urgency=medium\n\n' "$version"
		printf '  * Built from the source tree (scripts/deb.sh).\n\n'
		printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l "$pkg/changelog" -S Maintainer)" "$date"
	fi
	cat "$pkg/changelog"
} | gzip -9n >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz" "$stage/usr/share/man/man1/keyward.1.gz"

# -- control files ----------------------------------------------------------
install -d "$stage/DEBIAN"
for script in postinst prerm postrm; do
	install -m 0755 "$pkg/$script" "$stage/DEBIAN/$script"
done
echo /etc/keyward/keyward.conf >"$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
	sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$stage/DEBIAN/md5sums"

# The shared libraries' packages, as dpkg-shlibdeps finds them (it wants a
# debian/control beside it).
shl=$build/shlibdeps
rm -rf "$shl"
mkdir -p "$shl/debian"
printf 'Source: keyward\n\nPackage: keyward\nArchitecture: any\n' >"$shl/debian/control"
shlibs=$(cd "$shl" && dpkg-shlibdeps -O "../pkgroot/usr/bin/keyward" 2>/dev/null |
	sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || {
	echo "deb.sh: dpkg-shlibdeps found no libraries" >&2
	exit 1
}
size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@SIZE@|$size|" \
	-e "s|@DEPENDS@|$shlibs|" "$pkg/control.in" >"$stage/DEBIAN/control"

# Reproducible: every file dated like the changelog entry.
SOURCE_DATE_EPOCH=$(date -d "$date" +%s)
export SOURCE_DATE_EPOCH
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

deb=$out/keyward_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
