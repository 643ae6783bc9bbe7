#!/bin/sh
# install-deps.sh: install the Debian/Ubuntu packages sockfwd needs.
#
#   tools/install-deps.sh [--check] PROFILE...
#
# Profiles: build  compiler, libc headers, make, pkg-config, libconfig (config files),
#                  libmicrohttpd (--metrics), libsystemd (notify, socket activation)
#           test   build + Criterion, promtool (prometheus), mandoc, systemd's tools
#           deb    what `make deb` needs: build + uring (debian/control's
#                  Build-Depends), mandoc, dpkg-dev, debhelper, fakeroot
#           uring  liburing (for `make URING=1`)
#           coverage  test + lcov (make coverage)
#           soak   build + python3 (make soak: tests/soak/soak.py)
#           bench  python3 (the harness), iperf3, haproxy, nginx with its stream module, socat, gnuplot
#           format clang-format
#           fuzz   clang with libFuzzer and the sanitizer runtimes, llvm-symbolizer
#                  (`make fuzz`)
#           analyze clang's static analyzer (scan-build) and cppcheck (`make analyze`)
#
# With --check, install nothing: exit 0 if every package of the profiles is
# installed, else 1 (the missing ones are listed on stderr).
# Otherwise install what is missing with apt-get, through sudo when not
# root; if that is impossible, print the command to run and exit 1.
set -eu

usage() {
	echo "usage: $0 [--check] {build|test|uring|bench|format|deb|coverage|fuzz|analyze}..." >&2
	exit 2
}

pkgs_for() {
	case $1 in
	build) echo "gcc libc6-dev make pkg-config libconfig-dev libmicrohttpd-dev libsystemd-dev" ;;
	test) echo "$(pkgs_for build) libcriterion-dev prometheus mandoc systemd socat" ;;
	deb) echo "$(pkgs_for build) $(pkgs_for uring) mandoc dpkg-dev debhelper fakeroot" ;;
	uring) echo "liburing-dev" ;;
	bench) echo "python3 iperf3 haproxy nginx libnginx-mod-stream socat gnuplot-nox" ;;
	format) echo "clang-format" ;;
	coverage) echo "$(pkgs_for test) lcov" ;;
	fuzz) echo "clang libclang-rt-dev llvm" ;;
	analyze) echo "clang clang-tools cppcheck" ;;
	soak) echo "$(pkgs_for build) python3" ;;
	*) return 1 ;;
	esac
}

check=0
if [ "${1:-}" = "--check" ]; then
	check=1
	shift
fi
[ $# -ge 1 ] || usage

# Wanted packages, each once, in order.
wanted=
for profile in "$@"; do
	if ! list=$(pkgs_for "$profile"); then
		echo "$0: unknown profile '$profile'" >&2
		usage
	fi
	for p in $list; do
		case " $wanted " in
		*" $p "*) ;;
		*) wanted="$wanted $p" ;;
		esac
	done
done

installed() {
	command -v dpkg-query >/dev/null 2>&1 &&
		[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=
for p in $wanted; do
	installed "$p" || missing="$missing $p"
done
missing=${missing# }

if [ -z "$missing" ]; then
	[ $check -eq 1 ] || echo "install-deps: all present:$wanted"
	exit 0
fi
if [ $check -eq 1 ]; then
	echo "install-deps: missing: $missing" >&2
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: no apt-get here; sockfwd targets Debian/Ubuntu." >&2
	echo "install-deps: install the equivalents of: $missing" >&2
	exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
	sudo=
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo="sudo -n"
else
	echo "install-deps: not root and no password-less sudo; run as root:" >&2
	echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing" >&2
	exit 1
fi

echo "install-deps: installing: $missing"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
