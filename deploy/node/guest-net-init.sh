#!/bin/sh
# /init of the Linux guest that checks canopy-vmm's virtio-net from inside
# Debian's kernel: load the virtio and virtio_net modules, bring eth0 up as
# 10.3.0.2/24, ping the peer 10.3.0.1 (the test guest's responder on the
# other end of a unix datagram pair), and power off. Markers:
#   canopy-guest: eth0 mac <address> operstate <state>
#   canopy-guest: ping <busybox ping's summary line>
#   canopy-guest: msix vectors <n>
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
echo "canopy-guest: eth0 mac $(cat /sys/class/net/eth0/address) operstate $(cat /sys/class/net/eth0/operstate)"
echo "canopy-guest: ping $(ping -c 3 -W 5 10.3.0.1 | grep 'packets transmitted')"
echo "canopy-guest: msix vectors $(grep -c 'PCI-MSI.*virtio' /proc/interrupts)"
poweroff -f
