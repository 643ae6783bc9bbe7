#!/bin/sh
# check-deb.sh: check the package `make deb` built.
#
#   tools/check-deb.sh [--install] [DEB]    (default: build/deb/sockfwd_*.deb)
#
# Without touching the system: unpack DEB with `dpkg -x` into a scratch
# root and check that the binary runs from there (--version, every engine
# including uring, the example config passes -t), the manual pages are
# there and lint clean, the units of dist/systemd are there, point at
# /usr/bin/sockfwd and pass tests/systemd/verify-units.sh, /etc/sockfwd and the example config are shipped, the
# control data declares the run-time libraries, and the postinst creates
# the "sockfwd" system user (run with stand-ins for adduser and getent,
# twice: the second run must do nothing). lintian, when installed, must
# report no error.
#
# With --install (root only; skipped with a note when a sockfwd package is
# already on the machine): `dpkg -i` the package for real, check the user, the group, the
# files and the binary, install it a second time (postinst idempotent),
# then `dpkg -P` it, also on failure. The "sockfwd" user stays, as Debian
# packages leave their system users behind on purge.
# Exit 0 when every check passes, else 1.
set -eu

cd "$(dirname "$0")/.."
install=0
if [ "${1:-}" = "--install" ]; then
	install=1
	shift
fi
if [ $# -ge 1 ]; then
	deb=$1
else
	set -- build/deb/sockfwd_*.deb
	[ -e "$1" ] || {
		echo "check-deb: no build/deb/sockfwd_*.deb: run make deb" >&2
		exit 1
	}
	deb=$1
fi
fails=0
tmp=$(mktemp -d)
installed_by_us=0

cleanup() {
	if [ $installed_by_us -eq 1 ]; then
		dpkg -P sockfwd >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
	echo "check-deb: FAIL: $*" >&2
	fails=$((fails + 1))
}
ok() { echo "check-deb: ok: $*"; }

# 1. Control data.
dpkg-deb -I "$deb" >"$tmp/info"
version=$(dpkg-deb -f "$deb" Version)
grep -q ' postinst ' "$tmp/info" && ok "postinst in the control archive" ||
	fail "dpkg-deb -I shows no postinst"
depends=$(dpkg-deb -f "$deb" Depends)

# 2. Files, unpacked into a scratch root.
root=$tmp/root
dpkg -x "$deb" "$root"

# Depends names adduser (postinst) and the package of every shared library
# the binary links (as installed on this machine, where it was built).
want=adduser
for lib in $(readelf -d "$root/usr/bin/sockfwd" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
	pkg=$(dpkg -S "*/$lib" 2>/dev/null | sed -n '1s/:.*//p')
	[ -n "$pkg" ] || fail "no package on this machine ships $lib"
	want="$want $pkg"
done
for pkg in $want; do
	case ", $depends" in
	*", $pkg "* | *", $pkg,"* | *", $pkg") ;;
	*) fail "Depends lacks $pkg: $depends" ;;
	esac
done
case $want in
*liburing*) ;;
*) fail "the binary does not link liburing: built without URING=1?" ;;
esac
ok "Depends: $depends (covers: $want)"
for f in usr/bin/sockfwd usr/share/man/man1/sockfwd.1.gz \
	usr/share/man/man5/sockfwd.conf.5.gz usr/share/doc/sockfwd/examples/sockfwd.conf \
	usr/share/doc/sockfwd/copyright usr/share/doc/sockfwd/changelog.Debian.gz; do
	[ -f "$root/$f" ] || fail "missing /$f"
done
[ -d "$root/etc/sockfwd" ] || fail "missing /etc/sockfwd"
[ -x "$root/usr/bin/sockfwd" ] || fail "/usr/bin/sockfwd not executable"

# The binary, from the scratch root.
if out=$("$root/usr/bin/sockfwd" --version 2>&1); then
	case "$out" in
	"sockfwd ${version%-*} "*uring*) ok "--version: $out" ;;
	*) fail "--version says '$out' (expected sockfwd ${version%-*} with uring)" ;;
	esac
else
	fail "--version failed: $out"
fi
if out=$("$root/usr/bin/sockfwd" -c "$root/usr/share/doc/sockfwd/examples/sockfwd.conf" -t 2>&1); then
	ok "example config: $out"
else
	fail "example config does not pass -t: $out"
fi

# The manual pages: lint clean (see tools/check-man.sh for what is ignored).
for page in man1/sockfwd.1 man5/sockfwd.conf.5; do
	gz=$root/usr/share/man/$page.gz
	[ -f "$gz" ] || continue
	# Named as installed: mandoc checks the file name against .Dt.
	zcat "$gz" >"$tmp/${page#*/}"
	mandoc -Tlint -Wall "$tmp/${page#*/}" 2>&1 |
		grep -v -e 'STYLE: referenced manual not found' -e 'outdated mandoc.db lacks' \
			>"$tmp/lint" || true
	if [ -s "$tmp/lint" ]; then
		fail "$page: mandoc -Tlint -Wall:"
		sed 's/^/    /' "$tmp/lint" >&2
	else
		ok "$page: lint clean"
	fi
done

# The units: every one of dist/systemd, in the unit directory of the
# package, starting /usr/bin/sockfwd.
nunits=0
for u in dist/systemd/*.service dist/systemd/*.socket; do
	[ -e "$u" ] || continue
	nunits=$((nunits + 1))
	name=${u##*/}
	found=
	for d in lib/systemd/system usr/lib/systemd/system; do
		[ -f "$root/$d/$name" ] && found=$root/$d/$name
	done
	if [ -z "$found" ]; then
		fail "unit $name not in the package"
		continue
	fi
	if grep -q '^ExecStart=' "$found" &&
		! grep '^ExecStart=' "$found" | grep -q '/usr/bin/sockfwd'; then
		fail "$name: ExecStart does not run /usr/bin/sockfwd"
	fi
	ok "unit ${found#"$root"}"
done
[ $nunits -gt 0 ] || echo "check-deb: note: no dist/systemd units in this tree"
# systemd-analyze verify on the units as packaged, with the packaged binary.
unitdir=
for d in lib/systemd/system usr/lib/systemd/system; do
	[ -f "$root/$d/sockfwd@.service" ] && unitdir=$root/$d
done
if [ -n "$unitdir" ] && [ -x tests/systemd/verify-units.sh ] &&
	command -v systemd-analyze >/dev/null 2>&1; then
	if tests/systemd/verify-units.sh "$root/usr/bin/sockfwd" "$unitdir" >"$tmp/verify" 2>&1; then
		ok "units pass tests/systemd/verify-units.sh (systemd-analyze verify)"
	else
		fail "packaged units fail tests/systemd/verify-units.sh:"
		sed 's/^/    /' "$tmp/verify" >&2
	fi
fi

# 3. The postinst, with stand-ins: the first run creates the user with the
# expected arguments, a second run (user present) changes nothing.
dpkg-deb -e "$deb" "$tmp/control"
mkdir "$tmp/bin"
cat >"$tmp/bin/adduser" <<'EOF'
#!/bin/sh
echo "$*" >>"$FAKE_LOG"
: >"$FAKE_USER"
EOF
cat >"$tmp/bin/getent" <<'EOF'
#!/bin/sh
[ "$1 $2" = "passwd sockfwd" ] && [ -e "$FAKE_USER" ] && echo "sockfwd:x:999:999::/nonexistent:/usr/sbin/nologin" && exit 0
exit 2
EOF
for t in deb-systemd-helper deb-systemd-invoke systemctl invoke-rc.d update-rc.d; do
	printf '#!/bin/sh\necho "%s $*" >>"$FAKE_LOG"\n' "$t" >"$tmp/bin/$t"
done
chmod +x "$tmp/bin"/*
export FAKE_LOG="$tmp/fake.log" FAKE_USER="$tmp/fake.user"
: >"$FAKE_LOG"
PATH=$tmp/bin:$PATH sh "$tmp/control/postinst" configure ||
	fail "postinst configure failed"
expected="--quiet --system --group --no-create-home --home /nonexistent sockfwd"
if [ "$(cat "$FAKE_LOG")" = "$expected" ]; then
	ok "postinst: adduser $expected"
else
	fail "postinst ran: $(cat "$FAKE_LOG") (expected adduser $expected)"
fi
: >"$FAKE_LOG"
PATH=$tmp/bin:$PATH sh "$tmp/control/postinst" configure "$version" ||
	fail "postinst configure (again) failed"
[ -s "$FAKE_LOG" ] && fail "postinst with the user present ran: $(cat "$FAKE_LOG")" ||
	ok "postinst again: nothing to do"

# 4. lintian, if installed: no error (warnings are printed, not fatal).
if command -v lintian >/dev/null 2>&1; then
	if lintian --fail-on error "$deb"; then
		ok "lintian: no error"
	else
		fail "lintian reports errors"
	fi
else
	echo "check-deb: note: lintian not installed, skipped"
fi

# 5. A real install on this machine, removed again.
if [ $install -eq 1 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		fail "--install needs root"
	elif status=$(dpkg-query -W -f='${Status}' sockfwd 2>/dev/null) &&
		[ "${status##* }" != not-installed ]; then
		echo "check-deb: note: --install skipped: sockfwd is on this machine ($status); not touching it"
	else
		had_user=0
		getent passwd sockfwd >/dev/null && had_user=1
		installed_by_us=1
		if ! dpkg -i "$deb"; then
			fail "dpkg -i failed"
		else
			pw=$(getent passwd sockfwd || true)
			uid=$(echo "$pw" | cut -d: -f3)
			home=$(echo "$pw" | cut -d: -f6)
			if [ -z "$pw" ]; then
				fail "no user sockfwd after dpkg -i"
			elif [ "$uid" -ge 1000 ]; then
				fail "user sockfwd is not a system user: $pw"
			elif [ $had_user -eq 0 ] && [ "$home" != /nonexistent ]; then
				fail "user sockfwd created with home $home, not /nonexistent: $pw"
			else
				ok "user: $pw"
			fi
			getent group sockfwd >/dev/null && ok "group sockfwd" || fail "no group sockfwd"
			[ -d /etc/sockfwd ] && ok "/etc/sockfwd" || fail "no /etc/sockfwd"
			/usr/bin/sockfwd --version >/dev/null && ok "/usr/bin/sockfwd --version" ||
				fail "/usr/bin/sockfwd --version failed"
			for p in 1:sockfwd 5:sockfwd.conf; do
				man -w "${p%%:*}" "${p#*:}" >/dev/null 2>&1 && ok "man ${p%%:*} ${p#*:}" ||
					fail "man ${p%%:*} ${p#*:}: not found"
			done
			if dpkg -i "$deb" >/dev/null; then
				ok "dpkg -i again (postinst idempotent)"
			else
				fail "second dpkg -i failed"
			fi
		fi
		if dpkg -P sockfwd >/dev/null; then
			installed_by_us=0
			[ ! -e /usr/bin/sockfwd ] && ok "dpkg -P removed it" ||
				fail "/usr/bin/sockfwd left after dpkg -P"
		else
			fail "dpkg -P failed"
		fi
	fi
fi

if [ $fails -gt 0 ]; then
	echo "check-deb: $fails failure(s)" >&2
	exit 1
fi
echo "check-deb: OK ($deb)"
