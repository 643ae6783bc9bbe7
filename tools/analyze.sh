#!/bin/sh
# analyze.sh: static analysis of src/ (`make analyze`, docs/testing.md).
#
#   tools/analyze.sh [BUILDDIR]
#
# 1. clang's static analyzer: scan-build over a fresh build of
#    build/analyze (URING=1, so the io_uring engine is analyzed too); HTML
#    reports in BUILDDIR/report when it finds anything.
# 2. cppcheck over src/ (warning, style, performance, portability).
# Both must find nothing. A false positive is suppressed next to the code,
# with a comment saying why: /* cppcheck-suppress ID */ on the line
# before, or code the analyzer can follow (see fail() in core/config.c).
# One check is off for the whole tree: cppcheck's variableScope, which
# asks to move declarations into inner blocks, against the project's
# style(9) of declaring locals at the top of a function.
set -u
cd "$(dirname "$0")/.." || exit 2
dir=${1:-build/analyze}
rc=0

rm -rf "$dir"
mkdir -p "$dir"

echo "analyze: scan-build (clang static analyzer)"
if ! scan-build --status-bugs -o "$dir/report" \
	make --no-print-directory -j2 B="$dir/obj" URING=1 "$dir/obj/sockfwd" >"$dir/scan-build.log" 2>&1; then
	grep -E 'warning:|scan-build:' "$dir/scan-build.log" | grep -v 'Using|Removing' >&2
	echo "analyze: scan-build found problems (log $dir/scan-build.log, report in $dir/report)" >&2
	rc=1
else
	grep -E '^scan-build: .*bugs? found|No bugs found' "$dir/scan-build.log"
fi

echo "analyze: cppcheck"
queue=$(echo '#include <sys/queue.h>' | cpp -H -o /dev/null 2>&1 | sed -n '1s/^\. //p')
# sys/queue.h is forced in: cppcheck does not read system headers, and
# without LIST_HEAD the structs that embed one are syntax errors to it.
if ! cppcheck --enable=warning,style,performance,portability --suppress=variableScope \
	--inline-suppr --error-exitcode=1 --quiet -j2 --std=c11 -D_GNU_SOURCE -DSF_HAVE_URING \
	-Iinclude -Isrc ${queue:+--include="$queue"} src/ 2>"$dir/cppcheck.log"; then
	cat "$dir/cppcheck.log" >&2
	echo "analyze: cppcheck found problems" >&2
	rc=1
elif [ -s "$dir/cppcheck.log" ]; then
	cat "$dir/cppcheck.log" >&2
	rc=1
else
	echo "cppcheck: no findings"
fi
exit $rc
