"""Debian's stock kernel in canopy-vmm (inside a QEMU node, nested KVM)
takes its entropy from our virtio-rng with its own driver: the hw_random
core picks virtio_rng and /dev/hwrng gives random bytes."""
import os
import re

import pytest

from canopy_testlib import node

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

RUN = """#!/bin/sh
canopy-vmm --name linux --kernel /node/guest/vmlinuz \\
    --initrd /node/guest/initrd.gz --memory 256 --cpus 1 --rng on \\
    --serial stdio --cmdline "console=ttyS0 panic=-1 quiet"
echo "canopy-node: vmm exit $?"
"""


def test_debian_kernel_reads_hwrng_from_virtio_rng(build_dir, tmp_path):
    kernel = node.fetch_kernel(build_dir)
    guest = node.mkinitramfs(
        tmp_path / "guest.gz",
        os.path.join(node.NODE_DIR, "guest-rng-init.sh"),
        [(os.path.join(kernel, "guest-modules"), "/guest-modules")])
    n = node.Node(build_dir, tmp_path, RUN,
                  files=[(os.path.join(kernel, "vmlinuz"),
                          "/node/guest/vmlinuz"),
                         (guest, "/node/guest/initrd.gz")],
                  bins=[(os.path.join(build_dir, "bin", "canopy-vmm"),
                         "/usr/bin/canopy-vmm")])
    text = n.wait_exit(timeout=600)
    assert "canopy-node: kvm ready" in text, text[-3000:]
    m = re.search(r"canopy-guest: hwrng (\S+) bytes (\d+) distinct (\d+)",
                  text)
    assert m, "no hwrng in the guest:\n" + text[-4000:]
    assert m.group(1).startswith("virtio_rng"), m.group(0)
    assert int(m.group(2)) == 16384, m.group(0)
    assert int(m.group(3)) == 256, m.group(0)
    assert "canopy-node: vmm exit 0" in text, text[-3000:]
    r = re.search(r'msg="entropy source removed" dev=virtio-rng0 '
                  r'requests=(\d+)', text)
    assert r and int(r.group(1)) > 0, text[-3000:]
