#!/bin/sh
# Check the systemd units: systemd-analyze verify passes on them without a
# single warning, and they say what docs/operations.md promises.
#
#   tests/systemd/verify-units.sh [SOCKFWD_BINARY [UNIT_DIR]]
#
# Run by the e2e suite (systemd::units_verify). The units name
# /usr/bin/sockfwd, where the Debian package installs it; verify insists
# that ExecStart's binary exists, so the units are checked as copies in a
# temporary directory with that path replaced by the binary given (build/
# sockfwd by default). systemd-analyze verify only warns (exit 0) about an
# unknown key or a bad value, so any output counts as a failure; a unit
# broken on purpose shows that the check notices.
set -eu

bin=$(realpath "${1:-build/sockfwd}")
units=${2:-dist/systemd}
fail=0

command -v systemd-analyze >/dev/null || {
	echo "systemd-analyze not found (Debian package systemd)"
	exit 1
}
[ -x "$bin" ] || { echo "$bin: not an executable"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

for f in "$units"/sockfwd@.service "$units"/sockfwd@.socket; do
	[ -f "$f" ] || { echo "$f: missing"; exit 1; }
	sed "s#/usr/bin/sockfwd#$bin#g" "$f" >"$tmp/${f##*/}"
done

# verify UNIT...: 0 when systemd-analyze says nothing and exits 0.
verify() {
	out=$(cd "$tmp" && systemd-analyze verify --man=no "$@" 2>&1) && [ -z "$out" ] && return 0
	printf '%s\n' "$out"
	return 1
}

for u in sockfwd@.service sockfwd@.socket; do
	if verify "$u"; then
		echo "ok: systemd-analyze verify $u"
	else
		echo "FAIL: systemd-analyze verify $u"
		fail=1
	fi
done

# The check itself must catch a broken unit (a misspelt type only warns).
sed 's/^Type=notify$/Type=notifyy/' "$tmp/sockfwd@.service" >"$tmp/broken@.service"
if verify broken@.service >/dev/null; then
	echo "FAIL: a unit with Type=notifyy passes: this check would miss errors"
	fail=1
fi

# What the issue asks of the service (keys as written in the unit).
svc=$units/sockfwd@.service
for want in \
	'Type=notify' \
	'ExecStart=/usr/bin/sockfwd -c /etc/sockfwd/%i.conf' \
	'ExecReload=/bin/kill -HUP $MAINPID' \
	'Restart=on-failure' \
	'User=sockfwd' \
	'NoNewPrivileges=yes' \
	'ProtectSystem=strict' \
	'ProtectHome=yes' \
	'PrivateTmp=yes' \
	'CapabilityBoundingSet=CAP_NET_BIND_SERVICE' \
	'AmbientCapabilities=CAP_NET_BIND_SERVICE'; do
	grep -qxF "$want" "$svc" || { echo "FAIL: $svc lacks $want"; fail=1; }
done
nofile=$(sed -n 's/^LimitNOFILE=//p' "$svc")
case $nofile in
'' | *[!0-9]*) echo "FAIL: $svc: LimitNOFILE='$nofile' is not a number"; fail=1 ;;
*) [ "$nofile" -ge 262144 ] || { echo "FAIL: LimitNOFILE=$nofile < 262144"; fail=1; } ;;
esac
sock=$units/sockfwd@.socket
for want in 'ListenStream=' 'FileDescriptorName=' 'ReusePort=' 'Service='; do
	grep -q "^$want" "$sock" || { echo "FAIL: $sock lacks $want"; fail=1; }
done

[ $fail -eq 0 ] && echo "units OK"
exit $fail
