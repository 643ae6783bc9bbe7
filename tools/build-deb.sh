#!/bin/sh
# build-deb.sh: build the Debian package of this tree into OUTDIR.
#
#   tools/build-deb.sh [OUTDIR]     (default build/deb; `make deb` runs it)
#
# dpkg-buildpackage writes its artefacts into the parent of the source
# directory and cleans the tree it builds in, so the sources (the files git
# tracks plus new ones it does not ignore; without git, the tree minus
# build/ and .git) are copied to OUTDIR/src/sockfwd-VERSION and built
# there, binary only, unsigned. The .deb, .buildinfo and .changes end up
# in OUTDIR; the copy is removed. Build dependencies: tools/install-deps.sh deb.
set -eu

cd "$(dirname "$0")/.."
out=${1:-build/deb}
for tool in dpkg-buildpackage dpkg-parsechangelog dh; do
	command -v $tool >/dev/null 2>&1 || {
		echo "build-deb: $tool missing: run tools/install-deps.sh deb" >&2
		exit 1
	}
done

version=$(dpkg-parsechangelog -S Version)
upstream=${version%-*}
src=$out/src/sockfwd-$upstream
rm -rf "$out/src"
mkdir -p "$src"
out=$(cd "$out" && pwd)

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# -z and xargs -0 keep any file name intact; deleted files are skipped.
	git ls-files -z --cached --others --exclude-standard |
		xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
		tar --null -T - -cf - | tar -xf - -C "$src"
else
	tar --exclude=./build --exclude=./.git -cf - . | tar -xf - -C "$src"
fi

echo "build-deb: building sockfwd $version in $src"
(cd "$src" && dpkg-buildpackage -b -us -uc)

rm -f "$out"/sockfwd_*.deb "$out"/sockfwd-dbgsym_*.deb "$out"/sockfwd_*.buildinfo \
	"$out"/sockfwd_*.changes
mv "$out"/src/sockfwd_"$version"_*.deb "$out"/src/sockfwd_"$version"_*.buildinfo \
	"$out"/src/sockfwd_"$version"_*.changes "$out"/
for f in "$out"/src/sockfwd-dbgsym_"$version"_*.deb; do
	[ -e "$f" ] && mv "$f" "$out"/
done
rm -rf "$out/src"
ls -l "$out"
