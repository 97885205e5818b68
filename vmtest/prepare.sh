#!/usr/bin/env bash
# Prepares what vmtest needs to boot a real Linux kernel with IPVS under
# qemu: the qemu and busybox-static packages, and Debian's cloud kernel
# (linux-image-cloud-amd64: ip_vs, dummy, veth, nf_tables as modules, the
# serial console built in) unpacked into a cache directory. Nothing goes
# into the host's /boot or /lib/modules.
#
# Idempotent: a kernel already unpacked for the same package version is
# reused, so a second run needs no network. The only network it uses is
# Debian's apt. Run it as root (apt-get install); .ci/run calls it.
#
# The cache directory is, as vmtest reads it:
#   $CAIRN_VMTEST_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/cairn-vmtest
# and holds <package>_<version>/{vmlinuz,busybox,lib/modules/<kver>/...}
# plus "current", a symlink to the one in use.
set -euo pipefail

dir="${CAIRN_VMTEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn-vmtest}"
meta=linux-image-cloud-amd64
export DEBIAN_FRONTEND=noninteractive

# busybox-static, not busybox: the initramfs has no libc.
need_pkgs=()
for p in qemu-system-x86 busybox-static; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
updated=
if [ ${#need_pkgs[@]} -gt 0 ]; then
	apt-get update -qq
	updated=1
	apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# The metapackage depends on exactly one concrete kernel package.
resolve() {
	apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'
}
pkg="$(resolve)"
if [ -z "$pkg" ] && [ -z "$updated" ]; then
	apt-get update -qq
	pkg="$(resolve)"
fi
if [ -z "$pkg" ]; then
	echo "vmtest/prepare.sh: apt-cache knows no $meta; is a Debian bookworm source in /etc/apt/sources.list(.d)?" >&2
	exit 1
fi
version="$(apt-cache show --no-all-versions "$pkg" | awk '/^Version:/ {print $2; exit}')"
name="${pkg}_${version}"
target="$dir/$name"

if [ ! -e "$target/ready" ]; then
	mkdir -p "$dir"
	tmp="$(mktemp -d "$dir/.prepare.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download "$pkg=$version" >/dev/null 2>&1) || {
		echo "vmtest/prepare.sh: apt-get download $pkg=$version failed" >&2
		exit 1
	}
	mkdir "$tmp/x"
	dpkg-deb -x "$tmp"/*.deb "$tmp/x"
	kver="$(ls "$tmp/x/lib/modules")"
	mkdir "$tmp/out"
	cp "$tmp/x/boot/vmlinuz-$kver" "$tmp/out/vmlinuz"
	mkdir -p "$tmp/out/lib/modules"
	mv "$tmp/x/lib/modules/$kver" "$tmp/out/lib/modules/$kver"
	# The deb ships no modules.dep; vmtest reads it to pick the modules
	# (and their dependencies) that go into each initramfs.
	/bin/busybox depmod -b "$tmp/out" "$kver"
	cp /bin/busybox "$tmp/out/busybox"
	echo "$kver" >"$tmp/out/kernel-version"
	touch "$tmp/out/ready"
	rm -rf "$target"
	mv "$tmp/out" "$target"
fi
ln -sfn "$name" "$dir/current"
# Kernels of earlier package versions are no longer used.
for old in "$dir"/linux-image-*; do
	[ "$old" = "$target" ] || rm -rf "$old"
done
echo "vmtest: kernel $name ready in $dir/current"
