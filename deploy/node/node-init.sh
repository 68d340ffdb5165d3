#!/bin/sh
# /init of a Canopy QEMU node: mount the basics, load KVM (AMD, no nested
# paging: the only way KVM works inside a TCG node), then run /node/run if
# present and power off. Markers on the console tell the harness where the
# node is: "canopy-node: kvm ready", "canopy-node: exit N".
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
ip link set lo up
for m in $(cat /node/modules/order); do
	if [ "$m" = kvm-amd.ko ]; then
		insmod "/node/modules/$m" npt=0 || echo "canopy-node: insmod $m failed"
	else
		insmod "/node/modules/$m" || echo "canopy-node: insmod $m failed"
	fi
done
if [ -c /dev/kvm ]; then
	echo "canopy-node: kvm ready"
else
	echo "canopy-node: no /dev/kvm"
fi
rc=0
# A heartbeat: a node whose console stays silent longer than this has
# stopped as a whole (its timers or QEMU), not just the guest in it; the
# harness (canopy_testlib/node.py) tells the two apart by it.
(while sleep 15; do echo "canopy-node: alive"; done) &
beat=$!
if [ -x /node/run ]; then
	/node/run
	rc=$?
fi
kill $beat 2>/dev/null
echo "canopy-node: exit $rc"
poweroff -f
