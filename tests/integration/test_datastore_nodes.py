"""The datastore's Disk Paxos locks across two QEMU nodes that share one raw
disk image (virtio-blk, cache=none, share-rw): the only thing the two hosts
share is the virtual disk, as in the real lab. Each node runs ds_host in
contend mode on /dev/vda, with the guard blocks on the same disk past the
end of the datastore, read and written with O_DIRECT."""
import json
import os
import re
import subprocess

import pytest

from canopy_testlib import node

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

IMAGE_SIZE = 64 << 20
DS_SIZE = 48 << 20
GUARD_OFF = DS_SIZE  # 4096-byte guard blocks, outside the datastore
LOCKS = 2  # contended, of the 4 the volume has
# Attempts per node. Under TCG an attempt (heartbeat poll, Paxos rounds and
# guard I/O, all O_DIRECT through emulated virtio-blk) takes about 11 ms, so
# each node contends for about 25-30 s after a boot of about 10 s.
ITERS = 2500
HOLD_US = 2000

RUN = """#!/bin/sh
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if [ ! -b /dev/vda ]; then
    echo "canopy-test: no /dev/vda"
    exit 1
fi
q=/sys/block/vda/queue
echo "canopy-test: vda logical $(cat $q/logical_block_size)" \\
    "physical $(cat $q/physical_block_size) sectors $(cat /sys/block/vda/size)"
canopy-ds info /dev/vda
t0=$(cut -d' ' -f1 /proc/uptime)
ds_host /dev/vda {id} contend {locks} {iters} dev:/dev/vda:{guard} /tmp/log \\
    {hold}
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
echo "canopy-test: ds_host exit $rc from $t0 to $t1"
exit $rc
"""


def tool(build_dir, *args):
    r = subprocess.run([os.path.join(str(build_dir), "bin", "canopy-ds")] +
                       [str(a) for a in args], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_locks_exclude_across_two_nodes_sharing_a_disk(build_dir, tmp_path):
    img = tmp_path / "shared.img"
    with open(img, "wb") as f:
        f.truncate(IMAGE_SIZE)
    tool(build_dir, "format", img, "--name", "shared", "--size", "48M",
         "--locks", 4, "--hb-interval", 200, "--hb-timeout", 2000)
    # format keeps the larger file: the guard region stays outside.
    assert os.path.getsize(img) == IMAGE_SIZE
    assert json.loads(tool(build_dir, "info", img, "-o",
                           "json"))["size"] == DS_SIZE

    bins = [(os.path.join(str(build_dir), "tests", "helpers", "ds_host"),
             "/usr/bin/ds_host"),
            (os.path.join(str(build_dir), "bin", "canopy-ds"),
             "/usr/bin/canopy-ds")]
    nodes = []
    try:
        for hid, name in [(1, "a"), (2, "b")]:
            run = RUN.format(id=hid, locks=LOCKS, iters=ITERS,
                             guard=GUARD_OFF, hold=HOLD_US)
            nodes.append(node.Node(build_dir, tmp_path, run, bins=bins,
                                   disks=[img], memory_mib=1536,
                                   name="node-" + name))
        texts = [n.wait_exit(timeout=300) for n in nodes]
    finally:
        for n in nodes:
            n.kill()

    results = []
    for n, text in zip(nodes, texts):
        tail = text[-4000:]
        assert "VIOLATION" not in text, tail
        assert "fenced" not in text, tail
        assert "I/O:           O_DIRECT" in text, tail
        m = re.search(r"done acquired=(\d+) busy=(\d+)", text)
        assert m, "no result line:\n" + tail
        assert "canopy-test: ds_host exit 0" in text, tail
        assert "canopy-node: exit 0" in text, tail
        span = re.search(r"ds_host exit 0 from ([0-9.]+) to ([0-9.]+)", text)
        results.append((int(m.group(1)), int(m.group(2)),
                        float(span.group(2)) - float(span.group(1)),
                        n.elapsed))
    print("\nacquired, busy, ds_host seconds, node seconds:", results)
    for acquired, busy, _, _ in results:
        assert acquired > 0, results
        # Each saw the other holding a lock: the runs overlapped and the
        # lease written by one VM was read by the other.
        assert busy > 0, results

    # Both left cleanly: no lease is held, both slots say "left".
    assert json.loads(tool(build_dir, "locks", img, "-o", "json")) == []
    hb = json.loads(tool(build_dir, "heartbeats", img, "-o", "json"))
    assert {h["host"]: h["state"] for h in hb} == {1: "left", 2: "left"}, hb
    # The guard blocks are on the shared image: the last claim of each lock
    # is one of the two hosts.
    with open(img, "rb") as f:
        for k in range(LOCKS):
            f.seek(GUARD_OFF + k * 4096)
            assert int.from_bytes(f.read(8), "little") in (1, 2)
