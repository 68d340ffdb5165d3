#!/bin/sh
# Fetch Debian's stock kernel (linux-image-6.1.0-N-amd64, newest N in the
# archive, or $CANOPY_KERNEL_VERSION) and extract what Canopy's QEMU nodes
# and guests need into OUTDIR:
#   OUTDIR/vmlinuz            the bzImage
#   OUTDIR/modules/*.ko       kvm, kvm-amd, virtio_pci, virtio_blk,
#                             virtio_net, bridge and tun (none is built
#                             into Debian's kernel) and their dependencies
#   OUTDIR/modules/order      the order node-init.sh loads them in
#   OUTDIR/guest-modules/     what a Linux guest of canopy-vmm needs for its
#                             virtio devices and an ext4 disk, with its
#                             own `order` file
#   OUTDIR/version            the kernel release string and the module set
# Idempotent: does nothing when OUTDIR/version matches. Bump $format when the
# module set changes, so that existing caches are refreshed.
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
format=modules-v5
if [ -f "$out/version" ] &&
	[ "$(cat "$out/version")" = "$ver $format" ]; then
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
mkdir -p "$out"
rm -rf "$out/version" "$out/modules.new" "$out/guest-modules.new"
mkdir "$out/modules.new" "$out/guest-modules.new"
cp "$tmp/x/boot/vmlinuz-$ver" "$out/vmlinuz"
# Load order matters (no depmod here): irqbypass and ccp before kvm, kvm
# before kvm-amd; virtio_ring before virtio, both before virtio_pci (which
# also needs the modern and legacy device libraries) and virtio_blk. The
# disks attached with `-device virtio-blk-pci` then show up as /dev/vda...
# Then the network a node needs to bridge its VMs' TAPs onto an inter-node
# link (`-device virtio-net-pci`): failover before net_failover before
# virtio_net; llc before stp before bridge; tun (no dependencies).
for m in virt/lib/irqbypass.ko drivers/crypto/ccp/ccp.ko \
	arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko \
	drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko \
	drivers/virtio/virtio_pci_modern_dev.ko \
	drivers/virtio/virtio_pci_legacy_dev.ko \
	drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko \
	net/core/failover.ko drivers/net/net_failover.ko \
	drivers/net/virtio_net.ko net/llc/llc.ko net/802/stp.ko \
	net/bridge/bridge.ko drivers/net/tun.ko; do
	cp "$mods/$m" "$out/modules.new/"
	basename "$m" >>"$out/modules.new/order"
done
# The guest's set, in load order: virtio core, PCI transport, blk, net
# (failover first), balloon, rng (the hw_random core is built in), then
# ext4 and what it needs (crc32c through the crypto API).
for m in drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko \
	drivers/virtio/virtio_pci_modern_dev.ko \
	drivers/virtio/virtio_pci_legacy_dev.ko \
	drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko \
	net/core/failover.ko drivers/net/net_failover.ko \
	drivers/net/virtio_net.ko drivers/virtio/virtio_balloon.ko \
	drivers/char/hw_random/virtio-rng.ko \
	lib/crc16.ko crypto/crc32c_generic.ko fs/mbcache.ko fs/jbd2/jbd2.ko \
	fs/ext4/ext4.ko; do
	cp "$mods/$m" "$out/guest-modules.new/"
	basename "$m" >>"$out/guest-modules.new/order"
done
rm -rf "$out/modules" "$out/guest-modules"
mv "$out/modules.new" "$out/modules"
mv "$out/guest-modules.new" "$out/guest-modules"
echo "$ver $format" >"$out/version"
echo "fetch-kernel: $ver in $out"
