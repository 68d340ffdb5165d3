"""canopy-vmm boots Debian's stock kernel inside a QEMU node (nested KVM):
the guest reaches userspace and powers off cleanly through ACPI."""
import os
import re

import pytest

from canopy_testlib import node

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

RUN = """#!/bin/sh
canopy-vmm --name linux --kernel /node/guest/vmlinuz \\
    --initrd /node/guest/initrd.gz --memory 256 --cpus 2 --serial stdio \\
    --cmdline "console=ttyS0 panic=-1 quiet"
echo "canopy-node: vmm exit $?"
"""


def test_debian_kernel_boots_to_userspace(build_dir, tmp_path):
    kernel = node.fetch_kernel(build_dir)
    guest = node.guest_initramfs(build_dir, tmp_path / "guest.gz")
    n = node.Node(build_dir, tmp_path, RUN,
                  files=[(os.path.join(kernel, "vmlinuz"),
                          "/node/guest/vmlinuz"),
                         (guest, "/node/guest/initrd.gz")],
                  bins=[(os.path.join(build_dir, "bin", "canopy-vmm"),
                         "/usr/bin/canopy-vmm")])
    text = n.wait_exit(timeout=600)
    assert "canopy-node: kvm ready" in text, text[-3000:]
    m = re.search(r"canopy-guest: userspace up after ([0-9.]+)s, (\d+) cpus",
                  text)
    assert m, "the guest never reached userspace:\n" + text[-3000:]
    assert m.group(2) == "2", "the guest sees %s CPUs, not 2" % m.group(2)
    assert 'reason="guest powered off (ACPI S5)"' in text, text[-3000:]
    assert "canopy-node: vmm exit 0" in text
