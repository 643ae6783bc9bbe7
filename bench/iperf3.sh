#!/usr/bin/env bash
# Hand measurement with iperf3 (the method of docs/iperf3.md): one TCP
# stream through each engine and direct, interleaved, ROUNDS rounds;
# prints Gbit/s and the forwarder's CPU seconds per GB (utime+stime from
# /proc), then medians. Takes /tmp/sockfwd-bench.lock so that no other
# benchmark runs at the same time.
#   bench/iperf3.sh [ROUNDS] [SECONDS]      (SOCKFWD=build/sockfwd)
set -euo pipefail
rounds=${1:-5}
secs=${2:-5}
bin=${SOCKFWD:-build/sockfwd}
engines=$("$bin" -V | sed 's/.*engines: \([^;)]*\).*/\1/')
srv_port=15201
fwd_port=17001
exec 9>/tmp/sockfwd-bench.lock
flock 9

iperf3 -s -p $srv_port >/dev/null 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null || true' EXIT
sleep 0.5

# bytes and seconds received, from iperf3's JSON
run_iperf() {
	iperf3 -c 127.0.0.1 -p "$1" -t "$secs" -J |
		python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum_received"]; print(e["bytes"], e["seconds"])'
}

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

out=$(mktemp)
for r in $(seq "$rounds"); do
	for e in direct $engines; do
		if [ "$e" = direct ]; then
			read -r bytes s < <(run_iperf $srv_port)
			echo "$r direct $bytes $s 0" >>"$out"
			continue
		fi
		"$bin" -q -b "$e" -j 1 -l 127.0.0.1:$fwd_port -r 127.0.0.1:$srv_port &
		p=$!
		for _ in $(seq 50); do
			(exec 3<>/dev/tcp/127.0.0.1/$fwd_port) 2>/dev/null && break
			sleep 0.05
		done
		t0=$(ticks $p)
		read -r bytes s < <(run_iperf $fwd_port)
		t1=$(ticks $p)
		kill $p
		wait $p || true
		echo "$r $e $bytes $s $((t1 - t0))" >>"$out"
	done
done
hz=$(getconf CLK_TCK)
python3 - "$out" "$hz" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
hz = int(sys.argv[2])
res = {}
for r, e, b, s, t in rows:
    g = int(b) * 8 / float(s) / 1e9
    cpu = int(t) / hz / (int(b) / 1e9)
    res.setdefault(e, []).append((g, cpu))
base = st.median(g for g, _ in res["naive"]) if "naive" in res else None
basecpu = st.median(c for _, c in res["naive"]) if "naive" in res else None
direct = st.median(g for g, _ in res["direct"])
print("| path | Gbit/s median (min-max) | vs naive | vs direct | CPU-s/GB median | CPU vs naive |")
print("|---|---|---|---|---|---|")
for e, v in res.items():
    g = [x for x, _ in v]; c = [y for _, y in v]
    gm, cm = st.median(g), st.median(c)
    cpu = "-" if e == "direct" else "%.3f" % cm
    cr = "-" if e == "direct" or not basecpu else "%.2f" % (cm / basecpu)
    print("| %s | %.2f (%.2f-%.2f) | %s | %.2f | %s | %s |" % (
        e, gm, min(g), max(g), "%.2fx" % (gm / base) if base else "-", gm / direct, cpu, cr))
PY
rm -f "$out"
