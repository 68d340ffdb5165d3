#!/bin/sh
# /init of the Linux guest that keeps pinging across a live migration
# (tests/integration/test_vmm_linux_migrate.py): load the virtio and
# virtio_net modules, bring eth0 up as 10.3.0.2/24, say it is pinging, ping
# the peer 10.3.0.1 once a second for a while, print busybox ping's
# summary, power off. Markers:
#   canopy-guest: pinging
#   canopy-guest: ping <summary line>
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /guest-modules/order); do
	insmod "/guest-modules/$m" || echo "canopy-guest: insmod $m failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
ip addr add 10.3.0.2/24 dev eth0
i=0
while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $i -lt 50 ]; do
	sleep 0.1; i=$((i+1))
done
ping -c 2 -W 5 10.3.0.1 >/dev/null
echo "canopy-guest: pinging"
echo "canopy-guest: ping $(ping -c 40 -W 3 10.3.0.1 | grep 'packets transmitted')"
poweroff -f
