#!/usr/bin/python3
"""virtio-blk: the test guest's `blk` workload (polling driver at CPL3,
4 KiB requests) against the same raw image file under canopy-vmm and QEMU
(q35, virtio-blk-pci modern, KVM), plus the host's own pread of the file as
the floor. Modes: random 4 KiB reads at queue depth 1 and 8, sequential
64 KiB reads and writes; page cache (default) and O_DIRECT
(canopy `,direct`, QEMU `cache=none`); and a disk on the clustered
datastore (`--disk ds=`, O_DIRECT|O_DSYNC, locked) against QEMU
`cache=none` on a raw file.
Usage: bench/blk.py [RUNS] [SECS]"""
import os
import random
import re
import subprocess
import sys
import tempfile
import time

from benchlib import BUILD, compare, machine

GUEST = os.path.join(BUILD, "guest", "canopy-testguest.elf")
MIB = 1 << 20
DISK_MIB = 256
LINE = re.compile(r"blk: (\w+) ops (\d+) bytes (\d+) secs ([0-9.]+) "
                  r"iops (\d+) mbps ([0-9.]+) lat_avg_us (\d+)")


def canopy_cmd(disk, args, direct):
    return [os.path.join(BUILD, "bin", "canopy-vmm"), "--kernel", GUEST,
            "--memory", "128", "--cmdline", args, "--serial", "stdio",
            "--log-level", "error",
            "--disk", "path=%s%s" % (disk, ",direct" if direct else "")]


def qemu_cmd(disk, args, direct):
    return ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm",
            "-cpu", "host,-arch-capabilities", "-m", "128", "-nodefaults",
            "-no-user-config", "-display", "none", "-vga", "none",
            "-nic", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", GUEST, "-append", args,
            "-drive", "file=%s,if=none,id=d0,format=raw,cache=%s,aio=threads"
            % (disk, "none" if direct else "writeback"),
            "-device", "virtio-blk-pci,drive=d0,disable-legacy=on"]


def ds_prepare(d):
    """A datastore with a thick 256 MiB file holding the pattern."""
    tool = os.path.join(BUILD, "bin", "canopy-ds")
    vol = os.path.join(d, "ds.img")
    subprocess.run([tool, "format", vol, "--name", "bench", "--size",
                    "%dM" % (DISK_MIB + 64)], check=True,
                   capture_output=True)
    subprocess.run([tool, "create", vol, "vm/disk0", "--size",
                    "%dM" % DISK_MIB, "--thick", "--host-id", "9"],
                   check=True, capture_output=True)
    return vol


def canopy_ds_cmd(vol, args):
    cmd = canopy_cmd("x", args, False)
    cmd[-1] = "ds=%s:vm/disk0,host=1" % vol
    return cmd


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=120).stdout
    m = LINE.search(out)
    if not m:
        raise SystemExit("%s: no result line:\n%s" % (cmd[0], out[-2000:]))
    return int(m.group(5)), float(m.group(6)), int(m.group(7))


def host_pread(disk, bs, secs, seq):
    """The floor: this process reading the file with pread, same sizes."""
    fd = os.open(disk, os.O_RDONLY)
    blocks = DISK_MIB * MIB // bs
    n, t0 = 0, time.perf_counter()
    try:
        while time.perf_counter() - t0 < secs:
            for _ in range(256):
                b = n % blocks if seq else random.randrange(blocks)
                os.pread(fd, bs, b * bs)
                n += 1
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    return n / dt, n * bs / dt / 1e6


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    secs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print("virtio-blk, %d runs each of %d s, %d MiB raw image; %s"
          % (runs, secs, DISK_MIB, machine()))
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        disk = os.path.join(d, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(DISK_MIB * MIB)
        subprocess.run(canopy_cmd(disk, "blk,mode=write,mib=%d,bs=65536"
                                  % DISK_MIB, False),
                       check=True, capture_output=True, timeout=300)
        cases = [
            ("randread 4k qd1", "mode=randread,bs=4096,qd=1", False, 0),
            ("randread 4k qd8", "mode=randread,bs=4096,qd=8", False, 0),
            ("seqread 64k qd8", "mode=seqread,bs=65536,qd=8", False, 1),
            ("seqwrite 64k qd8", "mode=seqwrite,bs=65536,qd=8", False, 1),
            ("randread 4k qd8 O_DIRECT", "mode=randread,bs=4096,qd=8",
             True, 0),
        ]
        for title, mode, direct, seq in cases:
            args = "blk,%s,mib=%d,secs=%d" % (mode, DISK_MIB, secs)
            ours, base = [], []
            for _ in range(runs):  # interleaved: drift hits both alike
                ours.append(run(canopy_cmd(disk, args, direct)))
                base.append(run(qemu_cmd(disk, args, direct)))
            compare(title + " (IOPS)", [o[0] for o in ours],
                    [b[0] for b in base], "IOPS", "qemu",
                    lower_is_better=False)
            if "qd=1" in mode:
                # One request at a time from a cached file: the time from
                # the guest's notify to the completion it sees is mostly
                # notification and interrupt-free completion cost.
                compare(title + " notify -> completion latency",
                        [o[2] for o in ours], [b[2] for b in base], "us",
                        "qemu")
            if not direct and "read" in mode:
                bs = int(re.search(r"bs=(\d+)", mode).group(1))
                iops, mbps = host_pread(disk, bs, secs, seq)
                print("  %-10s  %9.0f IOPS (%.0f MB/s), one thread, "
                      "no VM" % ("host pread", iops, mbps))
        vol = ds_prepare(d)
        for title, mode in [("datastore disk randread 4k qd8",
                             "mode=randread,bs=4096,qd=8"),
                            ("datastore disk seqwrite 64k qd8",
                             "mode=seqwrite,bs=65536,qd=8")]:
            args = "blk,%s,mib=%d,secs=%d" % (mode, DISK_MIB, secs)
            ours, base = [], []
            for _ in range(runs):
                ours.append(run(canopy_ds_cmd(vol, args))[0])
                base.append(run(qemu_cmd(disk, args, True))[0])
            compare(title + " (IOPS)", ours, base, "IOPS",
                    "qemu cache=none", lower_is_better=False)


if __name__ == "__main__":
    main()
