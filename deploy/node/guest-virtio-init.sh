#!/bin/sh
# /init of the Linux guest that checks canopy-vmm's virtio devices from
# inside Debian's kernel: load the virtio and ext4 modules, mount the ext4
# disk /dev/vda, read /hello.txt, write /new.txt, discard and zero parts of
# the scratch disk /dev/vdb, read /dev/hwrng (virtio-rng), then watch
# MemTotal while the host inflates the balloon, and power off. Markers:
#   canopy-guest: read <first line of /hello.txt>
#   canopy-guest: wrote new.txt
#   canopy-guest: scratch discard ok|bad, write-zeroes ok|bad (when a
#                 second disk /dev/vdb is there)
#   canopy-guest: msix vectors <n>        (virtio interrupts on MSI-X; x86 labels them PCI-MSI)
#   canopy-guest: intx interrupts <n>     (virtio interrupts through the IOAPIC)
#   canopy-guest: hwrng <rng_current> bytes <n> distinct <b>
#   canopy-guest: no hwrng (with the end of dmesg)
#   canopy-guest: memtotal <kB>           (before)
#   canopy-guest: balloon memtotal <kB>   (after it dropped, or at timeout)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /guest-modules/order); do
	insmod "/guest-modules/$m" || echo "canopy-guest: insmod $m failed"
done
echo "canopy-guest: pci $(cat /sys/bus/pci/devices/*/device 2>/dev/null | tr '\n' ' ')"
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
mkdir -p /mnt
if mount -t ext4 /dev/vda /mnt; then
	echo "canopy-guest: read $(head -n 1 /mnt/hello.txt)"
	echo "written by the guest" >/mnt/new.txt && sync &&
		echo "canopy-guest: wrote new.txt"
	umount /mnt
else
	echo "canopy-guest: mount failed"
	dmesg | tail -n 20
fi
# The second disk: fill 2 MiB, discard the first MiB, zero the second
# (BLKZEROOUT: virtio-blk write-zeroes), and read back.
zero1m=$(dd if=/dev/zero bs=1M count=1 2>/dev/null | md5sum | cut -d' ' -f1)
if [ -b /dev/vdb ]; then
	dd if=/dev/urandom of=/dev/vdb bs=1M count=2 conv=fsync 2>/dev/null
	res() { [ "$1" = "$zero1m" ] && echo ok || echo bad; }
	blkdiscard -o 0 -l 1048576 /dev/vdb &&
		d=$(dd if=/dev/vdb bs=1M count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
	/usr/sbin/blkdiscard -z -o 1048576 -l 1048576 /dev/vdb &&
		z=$(dd if=/dev/vdb bs=1M skip=1 count=1 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
	echo "canopy-guest: scratch discard $(res "$d"), write-zeroes $(res "$z")"
fi
# Entropy: the hw_random core picks the virtio-rng device.
cur=/sys/class/misc/hw_random/rng_current
i=0
while ! grep -q virtio "$cur" 2>/dev/null && [ $i -lt 50 ]; do
	sleep 0.1; i=$((i+1))
done
if [ -c /dev/hwrng ] && grep -q virtio "$cur"; then
	dd if=/dev/hwrng of=/tmp/rnd bs=4096 count=4 2>/dev/null
	n=$(wc -c </tmp/rnd)
	b=$(od -An -v -tu1 /tmp/rnd | tr -s ' ' '\n' | grep . | sort -u | wc -l)
	echo "canopy-guest: hwrng $(cat "$cur") bytes $n distinct $b"
else
	echo "canopy-guest: no hwrng ($(cat "$cur" 2>/dev/null))"
	dmesg | tail -n 20
fi
echo "canopy-guest: intx interrupts $(grep 'IO-APIC.*virtio' /proc/interrupts | awk '{s+=$2} END {print s+0}')"
echo "canopy-guest: msix vectors $(grep -c 'PCI-MSI.*virtio' /proc/interrupts)"
mt() { sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo; }
before=$(mt)
echo "canopy-guest: memtotal $before"
i=0
while [ "$(mt)" -gt $((before - 153600)) ] && [ $i -lt 600 ]; do
	sleep 0.1; i=$((i+1))
done
echo "canopy-guest: balloon memtotal $(mt)"
poweroff -f
