#!/bin/sh
# Fetch Debian's stock kernel (linux-image-6.1.0-N-amd64, newest N in the
# archive, or $CANOPY_KERNEL_VERSION) and extract what Canopy's QEMU nodes
# and guests need into OUTDIR:
#   OUTDIR/vmlinuz            the bzImage
#   OUTDIR/modules/*.ko       kvm, kvm-amd and their dependencies
#   OUTDIR/version            the kernel release string
# Idempotent: does nothing when OUTDIR/version matches.
set -eu

out=${1:?usage: fetch-kernel.sh OUTDIR}
ver=${CANOPY_KERNEL_VERSION:-}
if [ -z "$ver" ]; then
	ver=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' |
		sed -n 's/^linux-image-\(6\.1\.0-[0-9]*-amd64\) .*/\1/p' |
		sort -V | tail -n 1)
fi
if [ -z "$ver" ]; then
	echo "fetch-kernel: no linux-image-6.1.0-*-amd64 in the apt cache;" \
		"run apt-get update" >&2
	exit 1
fi
if [ -f "$out/version" ] && [ "$(cat "$out/version")" = "$ver" ]; then
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "linux-image-$ver" >/dev/null 2>&1) || {
	echo "fetch-kernel: apt-get download linux-image-$ver failed" >&2
	exit 1
}
dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x"
mods="$tmp/x/lib/modules/$ver/kernel"
mkdir -p "$out/modules"
cp "$tmp/x/boot/vmlinuz-$ver" "$out/vmlinuz"
# Load order matters: irqbypass and ccp before kvm, kvm before kvm-amd.
for m in virt/lib/irqbypass.ko drivers/crypto/ccp/ccp.ko \
	arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko; do
	cp "$mods/$m" "$out/modules/"
done
printf 'irqbypass.ko\nccp.ko\nkvm.ko\nkvm-amd.ko\n' >"$out/modules/order"
echo "$ver" >"$out/version"
echo "fetch-kernel: $ver in $out"
