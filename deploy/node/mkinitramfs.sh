#!/bin/sh
# Build a gzip'd newc initramfs with busybox and chosen files.
#
#   mkinitramfs.sh OUT INIT [SRC=DST ...] [--bin PROGRAM=DST ...]
#
# INIT becomes /init. SRC=DST copies a file or directory to DST inside the
# image; --bin also copies the shared libraries PROGRAM needs (from ldd).
# busybox (busybox-static) is /bin/busybox with its applets linked.
set -eu

out=${1:?usage: mkinitramfs.sh OUT INIT [SRC=DST ...] [--bin PROG=DST ...]}
init=${2:?missing INIT}
shift 2

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/sbin" "$root/proc" "$root/sys" "$root/dev" \
	"$root/tmp" "$root/run" "$root/lib" "$root/lib64" "$root/usr/bin" \
	"$root/usr/sbin"
cp /bin/busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
	[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done
cp "$init" "$root/init"
chmod 755 "$root/init"

copy() { # SRC DST
	mkdir -p "$root/$(dirname "$2")"
	cp -RL "$1" "$root/$2"
}

bin=0
for arg in "$@"; do
	if [ "$arg" = "--bin" ]; then
		bin=1
		continue
	fi
	src=${arg%%=*}
	dst=${arg#*=}
	copy "$src" "$dst"
	if [ "$bin" = 1 ]; then
		for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*'); do
			[ -e "$root$lib" ] || copy "$lib" "$lib"
		done
	fi
	bin=0
done

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
