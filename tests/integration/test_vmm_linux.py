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


# Without ACPI Linux finds the CPUs and the IOAPIC in the MP table, and it
# has no way to power off: the node stops the VMM once the guest is up.
RUN_NO_ACPI = """#!/bin/sh
mkdir -m 0700 /tmp/vm
canopy-vmm --name linux --kernel /node/guest/vmlinuz \\
    --initrd /node/guest/initrd.gz --memory 256 --cpus 2 \\
    --control /tmp/vm/ctl \\
    --serial file:/tmp/guest.log --cmdline "console=ttyS0 panic=-1 acpi=off" &
vmm=$!
# A deadline by the clock: a loop count is no bound when the node is slow.
t=$(($(date +%s) + 150))
while ! grep -q "userspace up" /tmp/guest.log 2>/dev/null &&
    [ $(date +%s) -lt $t ]; do
    sleep 0.2
done
if ! grep -q "userspace up" /tmp/guest.log; then
    # Stuck (it happened once in CI, after "pnp: PnP ACPI: disabled"):
    # the exit counts twice 2 s apart and where each VMM thread is.
    echo "canopy-node: guest stuck"; vmmctl /tmp/vm/ctl status; sleep 2
    vmmctl /tmp/vm/ctl status
    for d in /proc/$vmm/task/*; do
        echo "canopy-node: thread $(cat $d/comm) $(cut -d' ' -f3 $d/stat)" \\
            "wchan $(cat $d/wchan) syscall $(cut -d' ' -f1 $d/syscall)"
    done
fi
kill -TERM $vmm
wait $vmm
echo "canopy-node: vmm exit $?"
cat /tmp/guest.log
"""


def boot_in_node(build_dir, tmp_path, run):
    kernel = node.fetch_kernel(build_dir)
    guest = node.guest_initramfs(build_dir, tmp_path / "guest.gz")
    _, text = node.boot(lambda: node.Node(build_dir, tmp_path, run,
                  files=[(os.path.join(kernel, "vmlinuz"),
                          "/node/guest/vmlinuz"),
                         (guest, "/node/guest/initrd.gz")],
                  bins=[(os.path.join(build_dir, "bin", "canopy-vmm"),
                         "/usr/bin/canopy-vmm"),
                        (os.path.join(build_dir, "tests", "helpers",
                                      "vmmctl"), "/usr/bin/vmmctl")]),
        timeout=600)
    return text


def assert_userspace_with_two_cpus(text):
    m = re.search(r"canopy-guest: userspace up after ([0-9.]+)s, (\d+) cpus",
                  text)
    assert m, "the guest never reached userspace:\n" + text[-3000:]
    assert m.group(2) == "2", "the guest sees %s CPUs, not 2" % m.group(2)


def test_debian_kernel_boots_to_userspace(build_dir, tmp_path):
    text = boot_in_node(build_dir, tmp_path, RUN)
    assert "canopy-node: kvm ready" in text, text[-3000:]
    assert_userspace_with_two_cpus(text)
    assert 'reason="guest powered off (ACPI S5)"' in text, text[-3000:]
    assert "canopy-node: vmm exit 0" in text


def test_debian_kernel_finds_cpus_in_the_mp_table(build_dir, tmp_path):
    text = boot_in_node(build_dir, tmp_path, RUN_NO_ACPI)
    assert "canopy-node: kvm ready" in text, text[-3000:]
    assert "ACPI: Interpreter disabled" in text, text[-3000:]
    assert "Intel MultiProcessor Specification v1.4" in text, text[-3000:]
    assert_userspace_with_two_cpus(text)
    assert 'reason="stopped by signal SIGTERM"' in text, text[-3000:]
    assert "canopy-node: vmm exit 0" in text
