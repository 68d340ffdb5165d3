"""Debian's stock kernel in canopy-vmm (inside a QEMU node, nested KVM)
drives our virtio devices with its own drivers: an ext4 disk made on the
host is mounted and read, a file written by the guest is found on the host
afterwards, discard and write-zeroes reach a second disk, the hw_random
core takes virtio-rng and /dev/hwrng gives random bytes, and inflating the
balloon lowers the guest's MemTotal. One node boot checks them all (node
boots are the slow part of make check)."""
import os
import re
import shutil
import subprocess

import pytest

from canopy_testlib import node

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

# The node's /dev/vda is the ext4 image; canopy-vmm uses it as a block
# device backend (the guest sees it as its /dev/vda).
RUN = """#!/bin/sh
dd if=/dev/zero of=/tmp/scratch.img bs=1M count=8 2>/dev/null
canopy-vmm --name linux --kernel /node/guest/vmlinuz \\
    --initrd /node/guest/initrd.gz --memory 384 --cpus 1 \\
    --serial file:/tmp/guest.log --control /tmp/ctl \\
    --disk path=/dev/vda,serial=canopy-ext4 --balloon \\
    --disk path=/tmp/scratch.img --rng on \\
    --cmdline "console=ttyS0 panic=-1 quiet CMDLINE_EXTRA" &
vmm=$!
# Deadlines by the clock: a loop count is no bound when the node is slow.
t=$(($(date +%s) + 240))
while ! grep -q "canopy-guest: memtotal" /tmp/guest.log 2>/dev/null &&
    [ $(date +%s) -lt $t ]; do
    sleep 0.2
done
vmmctl /tmp/ctl balloon 192
# Bounded: a guest that never powers off is killed and its log shown.
t=$(($(date +%s) + 240))
while kill -0 $vmm 2>/dev/null && [ $(date +%s) -lt $t ]; do
    sleep 0.2
done
if kill -0 $vmm 2>/dev/null; then
    # Spinning or halted? Two looks at the exit counts, 2 s apart, and
    # where each VMM thread is.
    echo "canopy-node: guest hung"; vmmctl /tmp/ctl status; sleep 2
    vmmctl /tmp/ctl status
    for d in /proc/$vmm/task/*; do
        echo "canopy-node: thread $(cat $d/comm) $(cut -d' ' -f3 $d/stat)" \
            "wchan $(cat $d/wchan) syscall $(cut -d' ' -f1 $d/syscall)"
    done
    kill -9 $vmm
fi
wait $vmm
echo "canopy-node: vmm exit $?"
echo "canopy-node: scratch blocks $(stat -c %b /tmp/scratch.img)"
cat /tmp/guest.log
"""


def make_ext4(path, tmp_path):
    src = tmp_path / "root"
    src.mkdir()
    (src / "hello.txt").write_text("made on the host\n")
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(path)],
                   check=True, capture_output=True, timeout=60)


@pytest.mark.parametrize("irq", ["msix", "intx"])
def test_debian_kernel_uses_virtio_blk_and_balloon(build_dir, tmp_path, irq):
    """irq=intx boots the guest with pci=nomsi: the same devices then
    interrupt through INTx, routed by the DSDT's _PRT."""
    if not shutil.which("mkfs.ext4") or not shutil.which("debugfs"):
        pytest.skip("mkfs.ext4/debugfs (e2fsprogs) not installed")
    if not shutil.which("blkdiscard"):
        pytest.skip("blkdiscard (util-linux) not installed")
    kernel = node.fetch_kernel(build_dir)
    img = tmp_path / "ext4.img"
    make_ext4(img, tmp_path)
    guest = node.mkinitramfs(
        tmp_path / "guest.gz",
        os.path.join(node.NODE_DIR, "guest-virtio-init.sh"),
        [(os.path.join(kernel, "guest-modules"), "/guest-modules")],
        # util-linux's blkdiscard: busybox's has no -z (BLKZEROOUT).
        bins=[(shutil.which("blkdiscard"), "/usr/sbin/blkdiscard")])
    extra = "pci=nomsi" if irq == "intx" else ""
    if os.environ.get("CANOPY_NODE_GUEST_VERBOSE"):
        extra += " loglevel=7"  # debugging a hang: the kernel's messages
    run = RUN.replace("CMDLINE_EXTRA", extra)
    _, text = node.boot(lambda: node.Node(
        build_dir, tmp_path, run, disks=[img],
        files=[(os.path.join(kernel, "vmlinuz"), "/node/guest/vmlinuz"),
               (guest, "/node/guest/initrd.gz")],
        bins=[(os.path.join(build_dir, "bin", "canopy-vmm"),
               "/usr/bin/canopy-vmm"),
              (os.path.join(build_dir, "tests", "helpers", "vmmctl"),
               "/usr/bin/vmmctl")]), timeout=900)
    assert "canopy-node: kvm ready" in text, text[-3000:]
    assert "canopy-guest: read made on the host" in text, text[-4000:]
    assert "canopy-guest: wrote new.txt" in text, text[-4000:]
    v = re.search(r"canopy-guest: msix vectors (\d+)", text)
    x = re.search(r"canopy-guest: intx interrupts (\d+)", text)
    assert v and x, text[-3000:]
    if irq == "msix":
        assert int(v.group(1)) >= 2, "virtio on MSI-X:\n" + text[-3000:]
    else:
        assert int(v.group(1)) == 0 and int(x.group(1)) > 0, text[-3000:]
    assert "canopy-guest: scratch discard ok, write-zeroes ok" in text, \
        text[-3000:]
    h = re.search(r"canopy-guest: hwrng (\S+) bytes (\d+) distinct (\d+)",
                  text)
    assert h, "no hwrng in the guest:\n" + text[-4000:]
    assert h.group(1).startswith("virtio_rng"), h.group(0)
    assert int(h.group(2)) == 16384 and int(h.group(3)) == 256, h.group(0)
    r = re.search(r'msg="entropy source removed" dev=virtio-rng0 '
                  r'requests=(\d+)', text)
    assert r and int(r.group(1)) > 0, text[-3000:]
    # The discarded MiB is a hole again in the scratch file (tmpfs).
    blocks = re.search(r"canopy-node: scratch blocks (\d+)", text)
    assert blocks and int(blocks.group(1)) * 512 <= 7 * (1 << 20), text
    m = re.search(r"canopy-guest: memtotal (\d+)", text)
    b = re.search(r"canopy-guest: balloon memtotal (\d+)", text)
    assert m and b, text[-4000:]
    # 384 MiB VM, target 192 MiB: the balloon takes 192 MiB (196608 kB).
    assert int(m.group(1)) - int(b.group(1)) >= 150 * 1024, (m.group(1),
                                                            b.group(1))
    assert "canopy-node: vmm exit 0" in text
    r = subprocess.run(["debugfs", "-R", "cat /new.txt", str(img)],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "written by the guest\n", r.stdout + r.stderr
    r = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
