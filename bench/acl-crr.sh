#!/bin/bash
# acl-crr.sh: does a 10,000-block allow list show in the connection rate?
# crr through sockfwd (splice, 1 thread, pinned to CPU 0; sfload on CPU 1)
# with no allow list and with 10,000 blocks (9,999 random ones that never
# match, then 127.0.0.0/8), alternating, ROUNDS pairs, a fresh upstream
# port per run against TIME_WAIT. Prints conn/s per run and the ratio of
# each pair. Takes /tmp/sockfwd-bench.lock like every benchmark here.
#
#   bench/acl-crr.sh [BUILD_DIR] [ROUNDS]     (default build, 6)
set -eu
B=${1:-build}
ROUNDS=${2:-6}
T=$(mktemp -d)
# Background forwarders and servers hold the lock's descriptor: never leave
# one behind (a failed step would keep the next run waiting on the lock).
trap 'rc=$?; kill $(jobs -p) 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
# Build what is missing (or stale) in that tree first.
make -s --no-print-directory B="$B" "$B/sockfwd" "$B/sfload" >&2
exec 9>/tmp/sockfwd-bench.lock
flock 9
python3 - "$T" <<'PY'
import random, sys
random.seed(7)
blocks = set()
while len(blocks) < 9999:
    a = random.randrange(1 << 32)
    if a >> 24 == 127:
        continue
    p = random.choice([16, 20, 24, 28, 32])
    a &= ~((1 << (32 - p)) - 1) & 0xffffffff
    blocks.add("%d.%d.%d.%d/%d" % (a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255, p))
blocks = sorted(blocks) + ["127.0.0.0/8"]
for name, acl in (("noacl", []), ("acl", blocks)):
    with open("%s/%s.conf" % (sys.argv[1], name), "w") as f:
        f.write('engine = "splice";\nthreads = 1;\nrules = {\n  r = {\n'
                '    listen = "127.0.0.1:@P";\n    upstream = "127.0.0.1:@U";\n')
        if acl:
            f.write('    allow = [ %s ];\n' % ", ".join('"%s"' % b for b in acl))
        f.write('  };\n};\n')
PY
P=29100
for round in $(seq 1 "$ROUNDS"); do
	line="$round"
	for name in noacl acl; do
		P=$((P + 1))
		U=$((P + 1000))
		taskset -c 1 "$B/sfload" serve -l 127.0.0.1:$U >/dev/null 2>&1 &
		srv=$!
		sed "s/@P/$P/; s/@U/$U/" "$T/$name.conf" >"$T/run.conf"
		taskset -c 0 "$B/sockfwd" -c "$T/run.conf" -q &
		fwd=$!
		sleep 0.5
		r=$(taskset -c 1 "$B/sfload" crr -c 127.0.0.1:$P -n 8 -t 3 -s 64 -m 20000 -a 1024 |
			python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["rate"] if d["errors"] == 0 else "errors=%d" % d["errors"])')
		kill $fwd $srv
		wait $fwd $srv 2>/dev/null || true
		line="$line $name=$r"
	done
	echo "$line" | awk '{ split($2, a, "="); split($3, b, "="); printf "%s  acl/noacl %.3f\n", $0, b[2] / a[2] }'
done
