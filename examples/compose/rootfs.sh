#!/bin/sh
# rootfs.sh DIR BINARY...: copies each binary into DIR at the same path,
# with every shared library ldd lists (the dynamic loader included), so
# that DIR runs the binaries as the root of an image FROM scratch.
set -eu
dir=$1
shift
copy() {
	mkdir -p "$dir$(dirname "$1")"
	cp -L "$1" "$dir$1"
}
for bin in "$@"; do
	copy "$bin"
	# "not a dynamic executable" (a static binary) is fine: no libraries.
	for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ )]*' || true); do
		copy "$lib"
	done
done
