#!/bin/sh
# Installs the Debian packages keyward needs to build and test.
#
# Usage: scripts/deps.sh [--list] [build|test|bench|soak|fuzz|deb]
#   --list prints the profile's packages on one line and installs nothing.
#   build  compiler, Meson, Ninja and the libraries keyward links against
#          (libpq for the PostgreSQL store, libmicrohttpd for the server,
#          libunistring for the Unicode properties that names are checked by)
#   test   build, plus cmocka (unit tests), python3 (black-box tests), nginx
#          (the auth_request test), the linters clang-format, clang-tidy and
#          cppcheck, the PostgreSQL server that scripts/pg.sh starts for
#          the PostgreSQL test runs, and chromium, nodejs and npm for the
#          browser tests (tests/browser: npm installs playwright-core, which
#          drives Debian's chromium), wrk (the load of the sign-in flood
#          test), and for the package test (tests/deb) what the deb profile
#          has plus strace (the sandbox check)
#   bench  build, plus wrk (load generator), nginx (the reference server) and
#          the PostgreSQL server for the PostgreSQL round
#   soak   build, plus python3 (tests/soak/soak.py) and wrk (its verification
#          load)
#   fuzz   build, plus clang and its libFuzzer runtime
#   deb    build, plus dpkg-dev (dpkg-buildflags, dpkg-shlibdeps, dpkg-deb),
#          lintian, systemd (systemd-analyze for the unit), man-db (man
#          --warnings on the man page) and adduser (the package's postinst)
#
# Run as root, it installs whatever is missing with apt-get. Run as another
# user, it installs nothing and prints the exact command to run instead.
set -eu

list=false
if [ "${1:-}" = --list ]; then # print the profile's packages, install nothing
	list=true
	shift
fi
profile=${1:-build}
pkgs="gcc pkg-config meson ninja-build libsodium-dev libjansson-dev libsqlite3-dev libpq-dev zlib1g-dev"
pkgs="$pkgs libmicrohttpd-dev libunistring-dev"
case "$profile" in
build) ;;
test) pkgs="$pkgs libcmocka-dev python3 nginx-light clang-format clang-tidy cppcheck postgresql chromium nodejs npm wrk"
	pkgs="$pkgs dpkg-dev lintian systemd man-db adduser strace" ;;
bench) pkgs="$pkgs python3 wrk nginx-light postgresql" ;;
soak) pkgs="$pkgs python3 wrk" ;;
fuzz) pkgs="$pkgs clang libclang-rt-14-dev" ;;
deb) pkgs="$pkgs dpkg-dev lintian systemd man-db adduser" ;;
*)
	echo "usage: scripts/deps.sh [--list] [build|test|bench|soak|fuzz|deb]" >&2
	exit 2
	;;
esac

if $list; then
	echo $pkgs
	exit 0
fi

# What installed packages provide counts too: a Node.js package that bundles
# npm provides "npm" (and conflicts with Debian's npm).
provided=" $(dpkg-query -W -f='${db:Status-Abbrev} ${Provides}\n' 2>/dev/null |
	awk '$1 == "ii" { for (i = 2; i <= NF; i++) { sub(/,$/, "", $i); if ($i !~ /^\(/ && $i !~ /\)$/) printf "%s ", $i } }')"
missing=""
for p in $pkgs; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*)
		case "$provided" in
		*" $p "*) ;;
		*) missing="$missing $p" ;;
		esac
		;;
	esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "keyward needs these Debian packages:$missing" >&2
	echo "install them with:  sudo apt-get install -y$missing" >&2
	exit 1
fi

echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing </dev/null
