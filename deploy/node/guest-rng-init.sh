#!/bin/sh
# /init of the Linux guest that checks canopy-vmm's virtio-rng from inside
# Debian's kernel: load the virtio modules, read /dev/hwrng (the hw_random
# core picks the virtio device), count the distinct byte values, power
# off. Markers:
#   canopy-guest: hwrng <rng_current> bytes <n> distinct <b>
#   canopy-guest: no hwrng (with the end of dmesg)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /guest-modules/order); do
	insmod "/guest-modules/$m" || echo "canopy-guest: insmod $m failed"
done
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
poweroff -f
