"""Debian's stock kernel in canopy-vmm (inside a QEMU node, nested KVM)
drives our virtio-net with its own virtio_net driver: eth0 comes up with
the MAC we give it and pings the test guest's responder, another canopy-vmm
on the other end of a unix datagram pair."""
import os
import re

import pytest

from canopy_testlib import node

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

RUN = """#!/bin/sh
canopy-vmm --name peer --kernel /node/guest/testguest.elf --memory 32 \\
    --cmdline "net,ip=10.3.0.1,secs=600" --serial file:/tmp/peer.log \\
    --net unix=/tmp/linux.sock,local=/tmp/peer.sock &
peer=$!
canopy-vmm --name linux --kernel /node/guest/vmlinuz \\
    --initrd /node/guest/initrd.gz --memory 256 --cpus 1 \\
    --serial file:/tmp/guest.log \\
    --net unix=/tmp/peer.sock,local=/tmp/linux.sock,mac=52:54:00:03:00:02 \\
    --cmdline "console=ttyS0 panic=-1 quiet" 2>/tmp/vmm.log
echo "canopy-node: vmm exit $?"
kill $peer
wait $peer
cat /tmp/guest.log
echo "canopy-node: peer log"
cat /tmp/peer.log
grep 'nic closed' /tmp/vmm.log
"""


def test_debian_kernel_pings_over_virtio_net(build_dir, tmp_path):
    kernel = node.fetch_kernel(build_dir)
    guest = node.mkinitramfs(
        tmp_path / "guest.gz",
        os.path.join(node.NODE_DIR, "guest-net-init.sh"),
        [(os.path.join(kernel, "guest-modules"), "/guest-modules")])
    elf = os.path.join(str(build_dir), "guest", "canopy-testguest.elf")
    _, text = node.boot(lambda: node.Node(build_dir, tmp_path, RUN,
                  files=[(os.path.join(kernel, "vmlinuz"),
                          "/node/guest/vmlinuz"),
                         (guest, "/node/guest/initrd.gz"),
                         (elf, "/node/guest/testguest.elf")],
                  bins=[(os.path.join(build_dir, "bin", "canopy-vmm"),
                         "/usr/bin/canopy-vmm")]), timeout=900)
    assert "canopy-node: kvm ready" in text, text[-3000:]
    assert "canopy-node: vmm exit 0" in text, text[-4000:]
    assert re.search(r"canopy-guest: eth0 mac 52:54:00:03:00:02 operstate "
                     r"up", text), text[-4000:]
    assert re.search(r"canopy-guest: ping 3 packets transmitted, 3 "
                     r"(packets )?received", text), text[-4000:]
    v = re.search(r"canopy-guest: msix vectors (\d+)", text)
    assert v and int(v.group(1)) >= 2, "virtio on MSI-X:\n" + text[-3000:]
    # The responder saw the Linux guest's ARP and echo requests.
    assert "net: mac " in text and "link up ip 10.3.0.1" in text
    m = re.search(r'msg="nic closed" dev=virtio-net0 .*?rx_packets=(\d+) '
                  r'.*?tx_packets=(\d+)', text)
    assert m and int(m[1]) >= 4 and int(m[2]) >= 4, text[-3000:]
