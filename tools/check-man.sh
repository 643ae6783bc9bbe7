#!/bin/sh
# check-man.sh: the manual pages are clean and complete.
#
#   tools/check-man.sh [SOCKFWD]     (default build/sockfwd; run by `make test`)
#
# - man/sockfwd.1 and man/sockfwd.conf.5 are clean under `mandoc -Tlint
#   -Wall` (only "referenced manual not found" and mandoc.db notes are
#   ignored: they depend on the pages installed on the machine) and, when groff is there (man-db
#   renders with it), under `groff -ww`;
# - every option of `SOCKFWD -h` has an `.It Fl` entry in sockfwd.1, and
#   every `.It Fl` entry there is an option of -h;
# - every key the config loader (src/core/config.c) compares a setting's
#   name with has an `.It Ic KEY No =` entry in sockfwd.conf.5, and every
#   such entry is a key of the loader;
# - each example file in sockfwd.conf.5 passes `SOCKFWD -c FILE -t`.
# Exit 0 when all hold, else 1 with one line per problem.
set -eu

cd "$(dirname "$0")/.."
bin=${1:-build/sockfwd}
man1=man/sockfwd.1
man5=man/sockfwd.conf.5
loader=src/core/config.c
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
	echo "check-man: $*" >&2
	fails=$((fails + 1))
}

[ -x "$bin" ] || {
	echo "check-man: $bin: not built (make first)" >&2
	exit 1
}
command -v mandoc >/dev/null 2>&1 || {
	echo "check-man: mandoc not installed (tools/install-deps.sh test)" >&2
	exit 1
}

# 1. Lint. Whether a cross-reference (Xr) is found depends on the pages and
# the mandoc.db of this machine: those two messages are not the page's fault.
for page in $man1 $man5; do
	mandoc -Tlint -Wall "$page" >"$tmp/lint" 2>&1 || true
	if grep -v -e 'STYLE: referenced manual not found' -e 'outdated mandoc.db lacks' \
		"$tmp/lint" >"$tmp/lint2"; then
		fail "$page: mandoc -Tlint -Wall:"
		sed 's/^/    /' "$tmp/lint2" >&2
	fi
	if command -v groff >/dev/null 2>&1; then
		groff -mandoc -Tutf8 -ww -z "$page" >"$tmp/groff" 2>&1 || true
		if [ -s "$tmp/groff" ]; then
			fail "$page: groff -ww:"
			sed 's/^/    /' "$tmp/groff" >&2
		fi
	fi
done

# 2. Options. In -h, an option line starts with two spaces, then "-x, --long"
# or "    --long". In sockfwd.1, ".It Fl x Ar arg , Fl \-long Ar arg".
"$bin" -h >"$tmp/help"
sed -n 's/^  \(-[A-Za-z], \)\{0,1\} *\(--[a-z][a-z-]*\).*/\1\2/p' "$tmp/help" |
	tr -d ',' | tr ' ' '\n' | sed '/^$/d' | sort -u >"$tmp/opts.help"
grep '^\.It Fl ' $man1 |
	grep -o 'Fl \\\{0,1\}-\{0,1\}[A-Za-z][a-z-]*' |
	sed 's/^Fl \\\{0,1\}/-/' | sort -u >"$tmp/opts.man"
[ -s "$tmp/opts.help" ] || fail "no option found in '$bin -h'"
for o in $(comm -23 "$tmp/opts.help" "$tmp/opts.man"); do
	fail "$man1: option $o of '$bin -h' has no .It Fl entry"
done
for o in $(comm -13 "$tmp/opts.help" "$tmp/opts.man"); do
	fail "$man1: .It Fl entry $o is not an option of '$bin -h'"
done

# 3. Config keys: every name the loader compares a setting's name with.
grep -o 'strcmp([a-z]*name, "[a-z_]*") == 0' $loader |
	sed 's/.*"\([a-z_]*\)".*/\1/' | sort -u >"$tmp/keys.loader"
sed -n 's/^\.It Ic \([a-z_]*\) No =.*/\1/p' $man5 | sort -u >"$tmp/keys.man"
[ "$(wc -l <"$tmp/keys.loader")" -ge 20 ] ||
	fail "$loader: found only $(wc -l <"$tmp/keys.loader") keys; has the loader changed shape?"
for k in $(comm -23 "$tmp/keys.loader" "$tmp/keys.man"); do
	fail "$man5: key '$k' of $loader has no .It Ic entry"
done
for k in $(comm -13 "$tmp/keys.loader" "$tmp/keys.man"); do
	fail "$man5: .It Ic entry '$k' is not a key of $loader"
done

# 4. The example files of sockfwd.conf.5 load.
awk -v dir="$tmp" '
	/^\.Bd -literal/ { n++; f = dir "/example" n ".conf"; next }
	/^\.Ed/ { f = ""; next }
	f != "" { print > f }' $man5
n=0
for f in "$tmp"/example*.conf; do
	[ -e "$f" ] || continue
	n=$((n + 1))
	if ! out=$("$bin" -c "$f" -t 2>&1); then
		fail "$man5: example $(basename "$f" .conf | tr -dc 0-9) does not load: $out"
	fi
done
[ $n -gt 0 ] || fail "$man5: no example found"

if [ $fails -gt 0 ]; then
	echo "check-man: $fails problem(s)" >&2
	exit 1
fi
echo "check-man: OK ($(wc -l <"$tmp/opts.help") options, $(wc -l <"$tmp/keys.loader") keys, $n examples)"
