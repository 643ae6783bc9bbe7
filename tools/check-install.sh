#!/bin/sh
# check-install.sh: `make install` and `make uninstall` into scratch roots.
#
#   tools/check-install.sh [MAKE_VAR=VALUE]...
#
# The arguments go to every make call (pass the flags of the last build,
# e.g. URING=1 WERROR=1, so the binary is not rebuilt). Checks:
# - DESTDIR=ROOT PREFIX=/usr installs exactly the expected files: the
#   binary, both manual pages, the example config, every unit of
#   dist/systemd, and the directory /etc/sockfwd;
# - the installed binary runs and the units name /usr/bin/sockfwd;
# - with PREFIX=/usr/local, a unit's /usr/bin/sockfwd becomes
#   /usr/local/bin/sockfwd (tested on the real units and on a fixture
#   unit, so the rewrite is checked even before dist/systemd has units);
# - UNITDIR moves the units;
# - make uninstall leaves no file and no directory of its own behind.
# Exit 0 when all hold, else 1.
set -eu

cd "$(dirname "$0")/.."
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
	echo "check-install: FAIL: $*" >&2
	fails=$((fails + 1))
}
ok() { echo "check-install: ok: $*"; }

# The files under $1, relative, sorted.
list() {
	(cd "$1" && find . -type f | sed 's|^\./||' | sort)
}

units=
for u in dist/systemd/*.service dist/systemd/*.socket; do
	[ -e "$u" ] && units="$units ${u##*/}"
done

# 1. PREFIX=/usr: exactly the expected files.
root=$tmp/usr
make --no-print-directory -s "$@" install DESTDIR="$root" PREFIX=/usr >"$tmp/log" 2>&1 || {
	cat "$tmp/log" >&2
	fail "make install DESTDIR=... PREFIX=/usr failed"
}
{
	echo usr/bin/sockfwd
	echo usr/share/doc/sockfwd/examples/sockfwd.conf
	echo usr/share/man/man1/sockfwd.1
	echo usr/share/man/man5/sockfwd.conf.5
	for u in $units; do echo "usr/lib/systemd/system/$u"; done
} | sort >"$tmp/expected"
list "$root" >"$tmp/got"
if cmp -s "$tmp/expected" "$tmp/got"; then
	ok "PREFIX=/usr installs: $(tr '\n' ' ' <"$tmp/got")"
else
	fail "PREFIX=/usr: installed files differ from the expected ones (< expected, > installed):"
	diff "$tmp/expected" "$tmp/got" | grep '^[<>]' >&2 || true
fi
[ -d "$root/etc/sockfwd" ] && ok "/etc/sockfwd created" || fail "no /etc/sockfwd"
[ -x "$root/usr/bin/sockfwd" ] && "$root/usr/bin/sockfwd" --version >/dev/null &&
	ok "installed binary runs" || fail "installed binary does not run"
for u in $units; do
	f=$root/usr/lib/systemd/system/$u
	if grep -q '^ExecStart=' "$f" && ! grep '^ExecStart=' "$f" | grep -q '/usr/bin/sockfwd'; then
		fail "$u: ExecStart does not name /usr/bin/sockfwd"
	fi
	[ "$(stat -c %a "$f")" = 644 ] || fail "$u: mode $(stat -c %a "$f"), not 644"
done

# 2. make uninstall leaves nothing of ours.
make --no-print-directory -s "$@" uninstall DESTDIR="$root" PREFIX=/usr >"$tmp/log" 2>&1 || {
	cat "$tmp/log" >&2
	fail "make uninstall failed"
}
left=$(list "$root")
[ -z "$left" ] && ok "uninstall removed every file" || fail "left after uninstall: $left"
for d in etc/sockfwd usr/share/doc/sockfwd; do
	[ ! -e "$root/$d" ] || fail "left after uninstall: /$d"
done

# 3. PREFIX=/usr/local: units rewritten, real ones and a fixture.
mkdir -p "$tmp/fixture"
printf '[Service]\nExecStartPre=/usr/bin/sockfwd -c /etc/sockfwd/%%i.conf -t\nExecStart=/usr/bin/sockfwd -c /etc/sockfwd/%%i.conf\n' \
	>"$tmp/fixture/sockfwd-fixture@.service"
allunits=
for u in dist/systemd/*.service dist/systemd/*.socket; do
	[ -e "$u" ] && allunits="$allunits $u"
done
allunits="$allunits $tmp/fixture/sockfwd-fixture@.service"
root=$tmp/local
make --no-print-directory -s "$@" install DESTDIR="$root" PREFIX=/usr/local UNITS="$allunits" \
	>"$tmp/log" 2>&1 || {
	cat "$tmp/log" >&2
	fail "make install PREFIX=/usr/local failed"
}
[ -x "$root/usr/local/bin/sockfwd" ] || fail "PREFIX=/usr/local: no /usr/local/bin/sockfwd"
[ -f "$root/usr/local/share/man/man1/sockfwd.1" ] || fail "PREFIX=/usr/local: no man1 page"
for u in $allunits; do
	f=$root/usr/local/lib/systemd/system/${u##*/}
	if [ ! -f "$f" ]; then
		fail "PREFIX=/usr/local: ${u##*/} not in /usr/local/lib/systemd/system"
	elif grep -q '/usr/bin/sockfwd' "$f"; then
		fail "PREFIX=/usr/local: ${u##*/} still names /usr/bin/sockfwd"
	elif grep -q '/usr/bin/sockfwd' "$u" && ! grep -q '/usr/local/bin/sockfwd' "$f"; then
		fail "PREFIX=/usr/local: ${u##*/} does not name /usr/local/bin/sockfwd"
	else
		ok "PREFIX=/usr/local: ${u##*/} installed$(sed -n 's/^ExecStart=\([^ ]*\).*/, runs \1/p' "$f")"
	fi
done

# 4. UNITDIR moves the units (Debian 12 wants /lib/systemd/system).
root=$tmp/unitdir
make --no-print-directory -s "$@" install DESTDIR="$root" PREFIX=/usr UNITDIR=/lib/systemd/system \
	UNITS="$tmp/fixture/sockfwd-fixture@.service" >"$tmp/log" 2>&1 || fail "make install UNITDIR=... failed"
[ -f "$root/lib/systemd/system/sockfwd-fixture@.service" ] && ok "UNITDIR=/lib/systemd/system" ||
	fail "UNITDIR=/lib/systemd/system: unit not there"

if [ $fails -gt 0 ]; then
	echo "check-install: $fails failure(s)" >&2
	exit 1
fi
echo "check-install: OK"
