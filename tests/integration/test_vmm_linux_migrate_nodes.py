"""Real Linux across a live migration between two QEMU nodes (slow; nested
KVM in each): Debian's kernel in canopy-vmm on node A pings the test
guest's responder, also on node A, once a second while it is migrated to a
canopy-vmm on node B (--incoming on B's address, control request
migrate_send on A). The pings go on from node B: at most a few are lost.

The nodes are linked by a virtual Ethernet that stays on the host's
loopback (QEMU `-netdev socket`, listen on A, connect on B; eth0 in each
node). Each node bridges eth0 and its VMs' TAP interfaces (br0, 10.9.0.1
on A, 10.9.0.2 on B); the migration stream crosses that link too. After
the move A's bridge learns the guest's MAC on eth0 from the destination's
RARP announcement (or the guest's next frame). Node B tells node A over the
link when its guest is done (nc), so A's responder serves until then."""
import os
import re
import time

import pytest

from canopy_testlib import node

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

MAC = "52:54:00:03:00:02"
MIG_PORT = 7000
DONE_PORT = 7001

# The inter-node link and the bridge; $1: this node's address on br0.
# iproute2's ip by its path: busybox sh runs its own applet (no tuntap)
# before anything in PATH.
BRIDGE = """ip() { /usr/sbin/ip "$@"; }
set_up_bridge() {
    ip link add br0 type bridge forward_delay 0
    ip link set eth0 master br0
    ip link set eth0 up
    ip link set br0 up
    ip addr add $1/24 dev br0
    i=0
    while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $i -lt 50 ]
    do
        sleep 0.1; i=$((i+1))
    done
    echo "canopy-node: link $(cat /sys/class/net/eth0/operstate)"
}
add_tap() {
    ip tuntap add dev $1 mode tap
    ip link set $1 master br0
    ip link set $1 up
}
"""

RUN_A = """#!/bin/sh
%(bridge)s
set_up_bridge 10.9.0.1
add_tap tpeer
add_tap tlinux
nc -l -p %(done)d >/tmp/peer-done &
nc=$!
canopy-vmm --name peer --kernel /node/guest/testguest.elf --memory 32 \\
    --cmdline "net,ip=10.3.0.1,secs=1200" --serial file:/tmp/peer.log \\
    --net tap=tpeer &
peer=$!
canopy-vmm --name linux --kernel /node/guest/vmlinuz \\
    --initrd /node/guest/initrd.gz --memory 256 --cpus 1 \\
    --serial file:/tmp/guest.log --control /tmp/src.ctl \\
    --net tap=tlinux,mac=%(mac)s \\
    --cmdline "console=ttyS0 panic=-1 quiet" 2>/tmp/src.log &
src=$!
i=0
while ! grep -q "canopy-guest: pinging" /tmp/guest.log 2>/dev/null; do
    i=$((i+1)); [ $i -gt 1200 ] && break; sleep 0.5
done
sleep 5
i=0
while :; do
    vmmctl /tmp/src.ctl migrate tcp:10.9.0.2:%(port)d >/tmp/mig.out 2>&1
    rc=$?
    grep -q "cannot connect" /tmp/mig.out || break
    i=$((i+1)); [ $i -ge 120 ] && break
    sleep 1
done
cat /tmp/mig.out
echo "canopy-node: migrate exit $rc after $i retries"
# A failed migration would leave B's receiver waiting (10 min): plain
# bytes instead of a header make it refuse and exit now. The source (maybe
# in doubt, waiting for migrate_resolve) is stopped.
if [ $rc != 0 ]; then
    echo abort | timeout 5 nc 10.9.0.2 %(port)d
    kill $src
fi
wait $src
echo "canopy-node: source exit $?"
grep "vm stopped" /tmp/src.log
ip tuntap del dev tlinux mode tap
i=0
while kill -0 $nc 2>/dev/null; do
    i=$((i+1)); [ $i -gt 360 ] && break; sleep 0.5
done
echo "canopy-node: peer says $(cat /tmp/peer-done)"
kill $nc 2>/dev/null
echo "canopy-node: bridge fdb $(bridge fdb show br br0 | grep -i %(mac)s)"
kill $peer
wait $peer
echo "canopy-node: source guest log"
cat /tmp/guest.log
echo "canopy-node: source vmm log"
tail -5 /tmp/src.log
"""

RUN_B = """#!/bin/sh
%(bridge)s
set_up_bridge 10.9.0.2
add_tap tlinux
canopy-vmm --name linux --incoming tcp:10.9.0.2:%(port)d --memory 256 \\
    --cpus 1 --serial file:/tmp/guest2.log --net tap=tlinux,mac=%(mac)s \\
    2>/tmp/dst.log &
dst=$!
wait $dst
echo "canopy-node: destination exit $?"
i=0
until echo done | timeout 5 nc 10.9.0.1 %(done)d; do
    i=$((i+1)); [ $i -ge 10 ] && break; sleep 1
done
echo "canopy-node: destination guest log"
cat /tmp/guest2.log
echo "canopy-node: destination vmm log"
grep "KVM refused" /tmp/dst.log; tail -5 /tmp/dst.log
"""


def script(text):
    return text % {"bridge": BRIDGE, "mac": MAC, "port": MIG_PORT,
                   "done": DONE_PORT}


def test_debian_keeps_pinging_across_a_migration_between_nodes(build_dir,
                                                               tmp_path):
    kernel = node.fetch_kernel(build_dir)
    guest = node.mkinitramfs(
        tmp_path / "guest.gz",
        os.path.join(node.NODE_DIR, "guest-ping-init.sh"),
        [(os.path.join(kernel, "guest-modules"), "/guest-modules")])
    elf = os.path.join(str(build_dir), "guest", "canopy-testguest.elf")
    bins = [(os.path.join(build_dir, "bin", "canopy-vmm"),
             "/usr/bin/canopy-vmm"),
            (os.path.join(build_dir, "tests", "helpers", "vmmctl"),
             "/usr/bin/vmmctl"),
            # iproute2 (busybox ip has no tuntap; its bridge tool shows
            # the forwarding database)
            ("/usr/sbin/ip", "/usr/sbin/ip"),
            ("/usr/sbin/bridge", "/usr/sbin/bridge")]
    files = [(os.path.join(kernel, "vmlinuz"), "/node/guest/vmlinuz"),
             (guest, "/node/guest/initrd.gz"),
             (elf, "/node/guest/testguest.elf")]
    ports = []

    def make_a():
        ports[:] = [node.free_tcp_port()]
        return node.Node(build_dir, tmp_path, script(RUN_A), files=files,
                         bins=bins, name="nodea",
                         nics=node.socket_nic_args("listen", ports[0],
                                                   "52:54:00:09:00:01"))

    def make_b():
        node.wait_listening(ports[0])
        return node.Node(build_dir, tmp_path, script(RUN_B), files=files,
                         bins=bins, name="nodeb",
                         nics=node.socket_nic_args("connect", ports[0],
                                                   "52:54:00:09:00:02"))

    t0 = time.monotonic()
    text_a, text_b = node.boot_all([make_a, make_b], timeout=1500)
    print("both nodes done in %.0f s" % (time.monotonic() - t0))
    tail = "node A:\n%s\nnode B:\n%s" % (text_a[-3000:], text_b[-3000:])
    assert "canopy-node: kvm ready" in text_a, tail
    assert "canopy-node: kvm ready" in text_b, tail
    assert "canopy-node: link up" in text_a, tail
    assert "canopy-node: link up" in text_b, tail
    m = re.search(r"migrated downtime_ms (\d+) total_ms (\d+)", text_a)
    assert m, tail
    print("between nodes: downtime %s ms, total %s ms" % (m[1], m[2]))
    assert "canopy-node: migrate exit 0" in text_a, tail
    assert "canopy-node: source exit 0" in text_a, tail
    assert re.search(r'vm stopped" vm=linux reason="migrated"', text_a), tail
    # The destination ran the guest (and announced its MAC) until the
    # guest powered off.
    assert re.search(r'migrated VM running" vm=linux .*announced_nics=1',
                     text_b), tail
    assert "canopy-node: destination exit 0" in text_b, tail
    assert "canopy-node: peer says done" in text_a, tail
    # A's bridge forwards to the guest's MAC over the link now.
    assert re.search(r"bridge fdb %s dev eth0 master br0" % MAC, text_a), tail
    p = re.search(r"canopy-guest: ping (\d+) packets transmitted, (\d+) "
                  r"(?:packets )?received", text_b)
    assert p, tail
    sent, got = int(p[1]), int(p[2])
    print("pings: %d sent, %d answered" % (sent, got))
    assert sent == 40 and got >= sent - 5, tail
