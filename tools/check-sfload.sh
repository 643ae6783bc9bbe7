#!/bin/sh
# check-sfload.sh: the bench's load generator works end to end.
#
#   tools/check-sfload.sh [SFLOAD]     (default build/sfload; run by `make test`)
#
# Against its own servers on loopback (no forwarder), a few seconds:
# - UDP: paced udp-stream c2s and echo lose nothing (every sequence number
#   the client sent is counted by the sink, or echoed back intact), an
#   unpaced c2s run reports received <= sent and a matching loss %,
#   udp-rr's samples match its round trips, udp-sessions gets every
#   session answered and still answering after the hold, and udp-serve's
#   own counts at exit agree with what the clients reported; udp-rr and
#   udp-sessions against a port with nobody exit 1 (bounded, no hang); a
#   datagram size out of range is a usage error (exit 2).
# - TCP: stream (both directions), crr, rr and idle still run and report;
#   stream's per-stream counts (-P) add up and match its fairness figures.
# Exit 0 when all hold, else 1 with one line per problem.
set -eu

cd "$(dirname "$0")/.."
bin=${1:-build/sfload}
fails=0
tmp=$(mktemp -d)
spid=
tpid=
cleanup() {
	[ -n "$spid" ] && kill "$spid" 2>/dev/null
	[ -n "$tpid" ] && kill "$tpid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

fail() {
	echo "check-sfload: $*" >&2
	fails=$((fails + 1))
}

# field JSON KEY: the number after "KEY": in the JSON line (first match).
field() {
	printf '%s\n' "$1" | sed -n "s/.*\"$2\": \([-0-9.]*\).*/\1/p" | head -n 1
}

# expect WHAT CONDITION: fail with WHAT unless the awk condition holds.
expect() {
	awk "BEGIN { exit !($2) }" 2>/dev/null || fail "$1 ($2)"
}

# run NAME ARGS...: run sfload with a 30 s bound; its stdout in $out.
run() {
	name=$1
	shift
	rc=0
	out=$(timeout 30 "$bin" "$@" 2>"$tmp/err") || rc=$?
	[ "$rc" -eq 0 ] || fail "$name: exit status $rc ($(head -c 200 "$tmp/err"))"
	case $out in
	*'"workload"'*) ;;
	*) fail "$name: no JSON result: $out" ;;
	esac
}

# serve MODE FILE: start sfload MODE on a free loopback port: $port, $spid.
serve() {
	for try in 1 2 3 4 5 6 7 8; do
		port=$((20000 + ($$ * 13 + try * 997) % 12000))
		"$bin" "$1" -l "127.0.0.1:$port" >"$2" 2>/dev/null &
		pid=$!
		for _ in $(seq 50); do
			grep -q '"ready"' "$2" 2>/dev/null && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if grep -q '"ready"' "$2"; then
			eval "$3=$pid"
			return 0
		fi
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	echo "check-sfload: $1 did not start" >&2
	exit 1
}

[ -x "$bin" ] || { echo "check-sfload: $bin is not built" >&2; exit 1; }

# ---- UDP
serve udp-serve "$tmp/udp" spid
u=127.0.0.1:$port
sunk=0

run "udp-stream c2s paced" udp-stream -c "$u" -t 0.5 -s 64 -R 2000
sent=$(field "$out" sent) recv=$(field "$out" received)
expect "udp-stream c2s paced: sent about 1000" "$sent >= 500 && $sent <= 1100"
expect "udp-stream c2s paced: every datagram counted" "$recv == $sent"
expect "udp-stream c2s paced: in order, no loss" \
	"$(field "$out" reordered) == 0 && $(field "$out" loss_pct) == 0"
sunk=$((sunk + ${recv:-0}))

run "udp-stream c2s unpaced" udp-stream -c "$u" -t 0.3 -s 1400 -b 16
sent=$(field "$out" sent) recv=$(field "$out" received) loss=$(field "$out" loss_pct)
expect "udp-stream c2s unpaced: 0 < received <= sent" "$recv > 0 && $recv <= $sent"
expect "udp-stream c2s unpaced: loss % matches" \
	"($sent - $recv) * 100 / $sent - $loss < 0.001 && $loss - ($sent - $recv) * 100 / $sent < 0.001"
expect "udp-stream c2s unpaced: Gbit/s from the datagrams" \
	"$(field "$out" gbps) > 0 && $(field "$out" gen_cpu_s) >= 0"
sunk=$((sunk + ${recv:-0}))

run "udp-stream echo paced" udp-stream -c "$u" -t 0.5 -s 1400 -R 2000 -d echo
sent=$(field "$out" sent) recv=$(field "$out" received)
expect "udp-stream echo paced: every echo back" "$recv == $sent && $sent >= 500"
expect "udp-stream echo paced: intact, in order" \
	"$(field "$out" bad) == 0 && $(field "$out" reordered) == 0"
echoed=${recv:-0}

run "udp-rr" udp-rr -c "$u" -t 0.3 -s 64
done_=$(field "$out" "done")
expect "udp-rr: round trips" "$done_ > 10 && $(field "$out" errors) == 0"
expect "udp-rr: one sample per round trip" "$(field "$out" samples) == $done_"
expect "udp-rr: p50 <= p99 <= max" \
	"$(field "$out" p50) <= $(field "$out" p99) && $(field "$out" p99) <= $(field "$out" max)"
lost=$(field "$out" lost)
echoed=$((echoed + ${done_:-0} + ${lost:-0}))

run "udp-sessions" udp-sessions -c "$u" -n 300 -a 16 -w 32 -H 0
expect "udp-sessions: every session answered" "$(field "$out" held) == 300"
expect "udp-sessions: every session still answers" "$(field "$out" checked_ok) == 300"
expect "udp-sessions: one sample per new session" "$(field "$out" samples) == 300"
expect "udp-sessions: a rate" "$(field "$out" rate) > 0"

# udp-serve's own counts when it stops.
kill "$spid"
wait "$spid" || true
spid=
final=$(grep '"udp-serve"' "$tmp/udp" || true)
[ -n "$final" ] || fail "udp-serve: no final JSON line"
expect "udp-serve: sank what the clients saw counted" "$(field "$final" sunk) == $sunk"
# Echoes: the paced stream, rr (and its warm-up), sessions twice.
expect "udp-serve: echoed them all" "$(field "$final" echoed) >= $echoed + 600"
expect "udp-serve: nothing malformed" "$(field "$final" bad) == 0"

# Nobody there: a clear failure, bounded in time.
if timeout 15 "$bin" udp-rr -c "127.0.0.1:$port" -t 0.2 >/dev/null 2>&1; then
	fail "udp-rr against a closed port: exit 0"
elif [ $? -ne 1 ]; then
	fail "udp-rr against a closed port: not exit 1 (hung?)"
fi
if timeout 15 "$bin" udp-sessions -c "127.0.0.1:$port" -n 1000 -H 0 >/dev/null 2>&1; then
	fail "udp-sessions against a closed port: exit 0"
elif [ $? -ne 1 ]; then
	fail "udp-sessions against a closed port: not exit 1 (hung?)"
fi
if "$bin" udp-stream -c "$u" -s 8 >/dev/null 2>&1 || [ $? -ne 2 ]; then
	fail "udp-stream -s 8: not a usage error"
fi

# ---- TCP
serve serve "$tmp/tcp" tpid
t=127.0.0.1:$port
run "stream c2s" stream -c "$t" -t 0.2
expect "stream c2s: bytes" "$(field "$out" bytes) > 0 && $(field "$out" failed) == 0"
run "stream s2c" stream -c "$t" -t 0.2 -d s2c -n 2
expect "stream s2c: bytes" "$(field "$out" bytes) > 0 && $(field "$out" streams) == 2"
# Many streams over two threads: every stream's bytes listed, adding up to
# the total; the fairness figures agree with the list.
run "stream c2s 64 streams" stream -c "$t" -t 0.2 -n 64 -T 2 -P
list=$(printf '%s\n' "$out" | sed -n 's/.*"stream_bytes": \[\([0-9, ]*\)\].*/\1/p')
fair=$(printf '%s\n' "$list" | tr -d ' ' | tr ',' '\n' | awk '
	{ n++; s += $1; q += $1 * $1; if (n == 1 || $1 < lo) lo = $1 }
	END { if (n) printf "%d %.0f %.0f %.4f", n, s, lo, s * s / (n * q) }')
set -- $fair
expect "stream 64 streams: 64 counts listed" "${1:-0} == 64 && $(field "$out" threads) == 2"
expect "stream 64 streams: counts add up to bytes" "${2:-0} == $(field "$out" bytes)"
expect "stream 64 streams: min as listed" "${3:-0} == $(field "$out" min) && ${3:-0} > 0"
expect "stream 64 streams: Jain's index from the counts" \
	"${4:-0} - $(field "$out" jain) < 0.001 && $(field "$out" jain) - ${4:-0} < 0.001"
expect "stream 64 streams: 0 < min/mean <= 1, jain <= 1" \
	"$(field "$out" min_mean) > 0 && $(field "$out" min_mean) <= 1 && $(field "$out" jain) <= 1"
# -W: announce the connected streams, start on a line on stdin.
out=$(echo | timeout 30 "$bin" stream -c "$t" -t 0.2 -n 3 -W 2>"$tmp/err") ||
	fail "stream -W: exit status $? ($(head -c 200 "$tmp/err"))"
case $out in
*'"event": "running", "streams": 3'*'"workload": "stream"'*) ;;
*) fail "stream -W: no running event before the result: $out" ;;
esac
run "crr" crr -c "$t" -t 0.2 -n 2 -a 8 -m 500
expect "crr: connections" "$(field "$out" "done") > 0"
run "rr" rr -c "$t" -t 0.2
expect "rr: round trips" "$(field "$out" "done") > 0 && $(field "$out" errors) == 0"
run "idle" idle -c "$t" -n 50 -H 0 -a 4
expect "idle: held and checked" "$(field "$out" checked_ok) == 50"

if [ "$fails" -ne 0 ]; then
	echo "check-sfload: $fails problem(s)" >&2
	exit 1
fi
echo "check-sfload: ok"
