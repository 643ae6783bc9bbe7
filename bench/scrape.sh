#!/bin/bash
# scrape.sh: does a Prometheus scrape loop of 100 requests a second show in
# the bench figures? crr (8 clients, 64-byte request and response) and one
# bulk stream (client to server) through sockfwd (splice, 1 thread, pinned
# to CPU 0 with its metrics thread; sfload on CPU 1) without --metrics, and
# with --metrics while a scraper on CPU 1 GETs /metrics 100 times a second
# (a new connection each, as a Prometheus server may), alternating, ROUNDS
# pairs, fresh ports every run. Prints conn/s and Gbit/s per run and the
# forwarder's CPU per connection (crr) or per GB (stream) from /proc (less
# sensitive to other load on the machine than rates), the ratio of each
# pair, the scrapes done (all must answer 200), and a summary: median and
# spread of each side and the median pair ratio; last, the CPU one scrape
# costs an idle sockfwd.
# Takes /tmp/sockfwd-bench.lock like every benchmark here.
#
#   bench/scrape.sh [BUILD_DIR] [ROUNDS] [SECONDS]     (default build, 10, 5)
set -eu
B=${1:-build}
ROUNDS=${2:-10}
SECS=${3:-5}
T=$(mktemp -d)
# Background forwarders and servers hold the lock's descriptor: never leave
# one behind (a failed step would keep the next run waiting on the lock).
trap 'rc=$?; kill $(jobs -p) 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
# Build what is missing (or stale) in that tree first.
make -s --no-print-directory B="$B" "$B/sockfwd" "$B/sfload" >&2
exec 9>/tmp/sockfwd-bench.lock
flock 9

# The scraper: GET /metrics at RATE per second for as long as it runs; on
# SIGTERM prints "done=N errors=E achieved=R/s".
cat >"$T/scraper.py" <<'PY'
import signal, socket, sys, time
port, rate = int(sys.argv[1]), float(sys.argv[2])
done = errors = 0
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
t0 = nxt = time.monotonic()
while not stop:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        s.close()
        if buf.startswith(b"HTTP/1.1 200") and b"sockfwd_bytes_total" in buf:
            done += 1
        else:
            errors += 1
    except OSError:
        errors += 1
    nxt += 1.0 / rate
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
el = time.monotonic() - t0
print("done=%d errors=%d achieved=%.1f/s" % (done, errors, done / el if el else 0))
PY

P=29400
RES="$T/results"
: >"$RES"
# run MODE WORKLOAD: one forwarder, one sfload client; the figure in FIG.
run() {
	local mode=$1 wl=$2 fwd srv scr="" out fig mflag=()
	P=$((P + 3))
	local U=$((P + 1)) M=$((P + 2))
	taskset -c 1 "$B/sfload" serve -l 127.0.0.1:$U >/dev/null 2>&1 &
	srv=$!
	if [ "$mode" = metrics ]; then
		mflag=(--metrics 127.0.0.1:$M)
	fi
	taskset -c 0 "$B/sockfwd" -b splice -j 1 -q -l 127.0.0.1:$P -r 127.0.0.1:$U "${mflag[@]}" &
	fwd=$!
	sleep 0.5
	if [ "$mode" = metrics ]; then
		taskset -c 1 python3 "$T/scraper.py" $M 100 >"$T/scrape.out" &
		scr=$!
		sleep 0.3
	fi
	t0=$(awk '{ print $14 + $15 }' /proc/$fwd/stat)
	if [ "$wl" = crr ]; then
		out=$(taskset -c 1 "$B/sfload" crr -c 127.0.0.1:$P -n 8 -t "$SECS" -s 64 -m 20000 -a 1024)
	else
		out=$(taskset -c 1 "$B/sfload" stream -c 127.0.0.1:$P -n 1 -t "$SECS" -d c2s)
	fi
	t1=$(awk '{ print $14 + $15 }' /proc/$fwd/stat)
	# The figure, and the forwarder's CPU: us per connection, or CPU-s per GB.
	fig=$(echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
cpu = (int(sys.argv[1]) - int(sys.argv[2])) / int(sys.argv[3])
if d["workload"] == "stream":
    print("%s %.4f" % (d["gbps"] if d["failed"] == 0 else "failed", cpu / (d["bytes"] / 1e9)))
else:
    print("%s %.2f" % (d["rate"] if d["errors"] == 0 else "errors", cpu / d["done"] * 1e6))
' $t1 $t0 "$(getconf CLK_TCK)")
	if [ -n "$scr" ]; then
		kill -TERM $scr
		wait $scr || true
		echo "  scraper ($wl): $(cat "$T/scrape.out")" >&2
	fi
	kill $fwd $srv
	wait $fwd $srv 2>/dev/null || true
	echo "$mode $wl $fig" >>"$RES"
	FIG=$fig
}

for round in $(seq 1 "$ROUNDS"); do
	for wl in crr stream; do
		# Alternate which side goes first, so drift hits both alike.
		if [ $((round % 2)) -eq 1 ]; then
			run plain $wl; a=$FIG
			run metrics $wl; b=$FIG
		else
			run metrics $wl; b=$FIG
			run plain $wl; a=$FIG
		fi
		set -- $a $b
		echo "$round $wl plain=$1 metrics=$3 cpu: plain=$2 metrics=$4" |
			awk '{ split($3, a, "="); split($4, b, "="); split($6, c, "="); split($7, d, "=");
			       printf "%s  metrics/plain %.3f, cpu %.3f\n", $0, b[2] / a[2], d[2] / c[2] }'
	done
done

# The cost itself, without load noise: CPU time of an idle sockfwd over
# 2,000 scrapes back to back (utime + stime of every thread).
P=$((P + 3))
taskset -c 0 "$B/sockfwd" -b splice -j 1 -q -l 127.0.0.1:$P -r 127.0.0.1:$((P + 1)) --metrics 127.0.0.1:$((P + 2)) &
fwd=$!
sleep 0.5
t0=$(awk '{ print $14 + $15 }' /proc/$fwd/stat)
taskset -c 1 python3 - $((P + 2)) <<'PY'
import socket, sys
for _ in range(2000):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    while s.recv(65536):
        pass
    s.close()
PY
t1=$(awk '{ print $14 + $15 }' /proc/$fwd/stat)
kill $fwd
wait $fwd 2>/dev/null || true
awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { us = t / hz / 2000 * 1e6;
	printf "sockfwd CPU per scrape (idle, 1 rule): %.0f us; at 100/s: %.2f%% of one CPU\n", us, us * 100 / 1e4 }' 

python3 - "$RES" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for wl, unit, col in (("crr", "conn/s", 2), ("stream", "Gbit/s", 2),
                      ("crr", "fwd CPU us/conn", 3), ("stream", "fwd CPU-s/GB", 3)):
    side = {m: [float(r[col]) for r in rows if r[0] == m and r[1] == wl] for m in ("plain", "metrics")}
    pairs = [b / a for a, b in zip(side["plain"], side["metrics"])]
    p, m = side["plain"], side["metrics"]
    print("%-6s plain   median %9.3f  min %9.3f  max %9.3f %s" % (wl, statistics.median(p), min(p), max(p), unit))
    print("%-6s metrics median %9.3f  min %9.3f  max %9.3f %s" % (wl, statistics.median(m), min(m), max(m), unit))
    print("%-6s pair ratio metrics/plain: median %.3f, min %.3f, max %.3f; metrics median %s the plain spread"
          % (wl, statistics.median(pairs), min(pairs), max(pairs),
             "within" if min(p) <= statistics.median(m) <= max(p) else "OUTSIDE"))
PY
