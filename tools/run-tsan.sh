#!/bin/sh
# run-tsan.sh: the end-to-end suite against a forwarder built with
# ThreadSanitizer, with its default two workers and again with four.
#
#   tools/run-tsan.sh SOCKFWD TEST_E2E [CRITERION ARGS...]   (run by `make tsan`)
#
# Criterion aborts when its own binary is built with -fsanitize=thread
# (Snaipe/Criterion#274, "Could not initialize inheritable arena"), so the
# test binary is a normal build driving the instrumented forwarder: the
# threads worth checking (workers, naive's connection threads, the metrics
# thread, main's reload and drain) are all in the forwarder.
#
# Every forwarder a test starts writes its reports to a file of its own in
# build/tsan/reports (TSAN_OPTIONS log_path): a test whose forwarder is
# killed, or whose exit status it does not check, cannot hide a race.
# Suppressions, each with its reason: tests/tsan.supp.
# Exit 0 when both runs pass and no report was written, else 1.
set -u

cd "$(dirname "$0")/.."
bin=$1
e2e=$2
shift 2
reports=build/tsan/reports
rc=0

rm -rf "$reports"
mkdir -p "$reports"
TSAN_OPTIONS="log_path=$PWD/$reports/tsan suppressions=$PWD/tests/tsan.supp second_deadlock_stack=1 history_size=4"
export TSAN_OPTIONS
for threads in 2 4; do
	printf '\n==== tsan: end-to-end suite, -j %s\n' "$threads"
	SOCKFWD_BIN=$bin SOCKFWD_TEST_THREADS=$threads "$e2e" --jobs 1 "$@" || rc=1
done
n=$(find "$reports" -type f | wc -l)
if [ "$n" -gt 0 ]; then
	echo "tsan: $n report(s) in $reports:" >&2
	for f in "$reports"/*; do
		sed -n '1,60p' "$f" >&2
	done
	rc=1
fi
[ "$rc" -eq 0 ] && echo "tsan: clean (no report, both runs passed)"
exit "$rc"
