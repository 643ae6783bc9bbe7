#!/bin/sh
# fuzz.sh: run libFuzzer harnesses one after the other (`make fuzz`).
#
#   tools/fuzz.sh BUILDDIR SECONDS NAME...
#
# Runs BUILDDIR/fuzz_NAME for SECONDS each, from the seed corpus
# tests/fuzz/corpus/NAME (read only) and the scratch corpus
# BUILDDIR/corpus/NAME (where new inputs go: kept between runs, never in
# git), with the dictionary tests/fuzz/NAME.dict when there is one.
# Every seed runs first, so each regression input of the corpus is
# replayed. A crash, leak, sanitizer report, timeout (FUZZ_TIMEOUT s for
# one input, default 10) or RSS over FUZZ_RSS_MB (default 2048) fails the
# run: the input is saved under BUILDDIR/artifacts/NAME/ and the command to
# replay it is printed. Logs: BUILDDIR/logs/NAME.log. One summary line per
# harness (executions, cov and ft as libFuzzer counts them); exit 1 if any
# harness failed.
set -u

[ $# -ge 3 ] || {
	echo "usage: $0 BUILDDIR SECONDS NAME..." >&2
	exit 2
}
dir=$1
secs=$2
shift 2
top=$(dirname "$0")/..
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
# Known leaks of libraries, each explained in the file.
LSAN_OPTIONS="suppressions=$(cd "$top" && pwd)/tests/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
failed=

# Longest useful input per harness: beyond it the harness skips the input.
max_len() {
	case $1 in
	proxy) echo 1024 ;;
	addr) echo 600 ;;
	size_duration) echo 256 ;;
	options) echo 2048 ;;
	cidr) echo 4096 ;;
	*) echo 16384 ;;
	esac
}

for name in "$@"; do
	bin=$dir/fuzz_$name
	seeds=$top/tests/fuzz/corpus/$name
	corpus=$dir/corpus/$name
	art=$dir/artifacts/$name
	log=$dir/logs/$name.log
	mkdir -p "$corpus" "$art" "$dir/logs"
	dict=
	[ -f "$top/tests/fuzz/$name.dict" ] && dict=-dict=$top/tests/fuzz/$name.dict
	[ -d "$seeds" ] || seeds=

	# shellcheck disable=SC2086 # $dict and $seeds are empty or one word
	"$bin" -max_total_time="$secs" -timeout="$timeout" -rss_limit_mb="$rss" \
		-max_len="$(max_len "$name")" -error_exitcode=77 -timeout_exitcode=78 \
		-print_final_stats=1 -artifact_prefix="$art/" $dict "$corpus" $seeds \
		>"$log" 2>&1
	rc=$?
	# A sanitizer report that did not stop the run still fails it.
	if [ $rc -eq 0 ] && grep -qE '^(==[0-9]+==ERROR|SUMMARY: |.*runtime error:)' "$log"; then
		rc=1
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1)
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	files=$(find "$corpus" -type f | wc -l)
	if [ $rc -eq 0 ]; then
		echo "fuzz $name: ok, ${execs:-?} executions in ${secs}s, cov ${cov:-?} ft ${ft:-?}," \
			"scratch corpus $files inputs"
	else
		echo "fuzz $name: FAILED (exit $rc) after ${execs:-?} executions; log $log"
		grep -E 'ERROR|runtime error|property failed|Test unit written|SUMMARY' "$log" |
			head -20 | sed 's/^/    /'
		for a in "$art"/*; do
			[ -f "$a" ] && echo "    replay: $bin $a"
		done
		failed="$failed $name"
	fi
done

if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
exit 0
